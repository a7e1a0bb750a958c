//! What queries return: the public rows of the read models, each defined beside its
//! projection (`feed/view.rs`, `comments/view.rs`, `users/view.rs`) and gathered here.

pub use crate::comments::CommentView;
pub use crate::feed::{PollView, PostView};
pub use crate::users::{SanctionTerm, SanctionView, SessionSummary, SessionView, UserView};
