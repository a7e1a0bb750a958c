//! The Post aggregate: a post and its comments, and the pseudonym rule under it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::ids::{CommentId, PostId, UserId};
use crate::pseudonym::PseudonymScheme;
use crate::values::{Actor, CommentBody, PostBody, PostTitle, Tag};

/// What can be asked of a post.
#[derive(Debug, Clone)]
pub enum PostCommand {
    Publish {
        post_id: PostId,
        author: Actor,
        title: Option<PostTitle>,
        body: PostBody,
        tags: Vec<Tag>,
        anonymous: bool,
        at: DateTime<Utc>,
    },
    AddComment {
        comment_id: CommentId,
        author: Actor,
        body: CommentBody,
        anonymous: bool,
        reply_to: Option<CommentId>,
        at: DateTime<Utc>,
    },
    DeleteComment {
        comment_id: CommentId,
        actor: Actor,
    },
    Delete {
        actor: Actor,
    },
}

/// What happened to a post. `author_id` is private to the write model: projections must not
/// copy it anywhere public when `anonymous` is set (ARCHITECTURE.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PostEvent {
    PostPublished {
        post_id: PostId,
        author_id: UserId,
        /// The host name when anonymous, else the author's username.
        author_name: String,
        anonymous: bool,
        title: Option<String>,
        body: String,
        tags: Vec<String>,
    },
    CommentAdded {
        post_id: PostId,
        comment_id: CommentId,
        author_id: UserId,
        /// The pseudonym (or host name) when anonymous, else the username.
        author_name: String,
        anonymous: bool,
        /// Whether this is the anonymous post's author commenting anonymously (shown as the
        /// host name). Never set on a named comment or under a named post, where it would tie
        /// anonymous content to a name (see [`Post::hosts_anonymously`]).
        is_host: bool,
        body: String,
        reply_to: Option<CommentId>,
    },
    CommentDeleted {
        post_id: PostId,
        comment_id: CommentId,
        deleted_by: UserId,
        by_admin: bool,
    },
    PostDeleted {
        post_id: PostId,
        deleted_by: UserId,
        by_admin: bool,
    },
}

impl DomainEvent for PostEvent {
    const TYPES: &'static [&'static str] = &[
        "PostPublished",
        "CommentAdded",
        "CommentDeleted",
        "PostDeleted",
    ];
}

/// Why a post command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("the post does not exist")]
    NotFound,
    #[error("the post already exists")]
    AlreadyExists,
    #[error("the post has been deleted")]
    Deleted,
    #[error("the comment does not exist")]
    CommentNotFound,
    #[error("the comment replied to does not exist under this post")]
    ReplyTargetNotFound,
    #[error("only the author or an admin may do this")]
    NotAllowed,
    #[error("the comment id is already used")]
    DuplicateComment,
}

/// Configuration the Post aggregate decides with.
#[derive(Debug, Clone, Default)]
pub struct PostServices {
    pub pseudonyms: PseudonymScheme,
}

#[derive(Debug, Clone)]
struct Comment {
    author_id: UserId,
    deleted: bool,
}

/// A post's write-side state.
#[derive(Debug, Clone, Default)]
pub struct Post {
    id: Option<PostId>,
    author_id: Option<UserId>,
    /// Whether the post itself is anonymous.
    anonymous: bool,
    deleted: bool,
    comments: HashMap<CommentId, Comment>,
    /// Pseudonyms handed out under this post, by user; never removed.
    pseudonyms: HashMap<UserId, String>,
    used_names: HashSet<String>,
}

impl Post {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The pseudonym a user holds under this post, if they have commented anonymously.
    pub fn pseudonym_of(&self, user: UserId) -> Option<&str> {
        self.pseudonyms.get(&user).map(String::as_str)
    }

    /// Whether a comment by `user` is the host's anonymous comment under an anonymous post: the
    /// only case where saying "this is the post's author" reveals nothing, because both items
    /// are anonymous under one post. Under a named post the marker would unmask the comment,
    /// and on a named comment it would unmask the post.
    fn hosts_anonymously(&self, user: UserId, anonymous_comment: bool) -> bool {
        anonymous_comment && self.anonymous && Some(user) == self.author_id
    }

    /// Names the anonymous author of a new comment: the host name for the author of an
    /// anonymous post, the user's existing pseudonym, or the next unused name of the scheme.
    /// The author of a named post gets a pseudonym like anyone else.
    fn anonymous_name(&self, user: UserId, scheme: &PseudonymScheme) -> String {
        if self.hosts_anonymously(user, true) {
            return scheme.host_name().to_owned();
        }
        if let Some(name) = self.pseudonyms.get(&user) {
            return name.clone();
        }
        // Skipping used names keeps names unique even if the scheme was reconfigured.
        (self.pseudonyms.len()..)
            .map(|i| scheme.name_at(i))
            .find(|n| !self.used_names.contains(n) && n != scheme.host_name())
            .expect("the scheme is unbounded")
    }

    fn live(&self) -> Result<PostId, PostError> {
        match self.id {
            None => Err(PostError::NotFound),
            Some(_) if self.deleted => Err(PostError::Deleted),
            Some(id) => Ok(id),
        }
    }

    fn may_moderate(&self, actor: &Actor, owner: UserId) -> Result<(), PostError> {
        if actor.is_admin || actor.user_id == owner {
            Ok(())
        } else {
            Err(PostError::NotAllowed)
        }
    }
}

impl Aggregate for Post {
    type Command = PostCommand;
    type Event = PostEvent;
    type Error = PostError;
    type Services = PostServices;

    fn decide(
        &self,
        command: &PostCommand,
        services: &PostServices,
    ) -> Result<Vec<PostEvent>, PostError> {
        match command {
            PostCommand::Publish {
                post_id,
                author,
                title,
                body,
                tags,
                anonymous,
                ..
            } => {
                if self.exists() {
                    return Err(PostError::AlreadyExists);
                }
                let author_name = if *anonymous {
                    services.pseudonyms.host_name().to_owned()
                } else {
                    author.username.clone()
                };
                Ok(vec![PostEvent::PostPublished {
                    post_id: *post_id,
                    author_id: author.user_id,
                    author_name,
                    anonymous: *anonymous,
                    title: title.as_ref().map(|t| t.as_str().to_owned()),
                    body: body.as_str().to_owned(),
                    tags: tags.iter().map(|t| t.as_str().to_owned()).collect(),
                }])
            }
            PostCommand::AddComment {
                comment_id,
                author,
                body,
                anonymous,
                reply_to,
                ..
            } => {
                let post_id = self.live()?;
                if self.comments.contains_key(comment_id) {
                    return Err(PostError::DuplicateComment);
                }
                if let Some(target) = reply_to {
                    match self.comments.get(target) {
                        Some(c) if !c.deleted => {}
                        _ => return Err(PostError::ReplyTargetNotFound),
                    }
                }
                let author_name = if *anonymous {
                    self.anonymous_name(author.user_id, &services.pseudonyms)
                } else {
                    author.username.clone()
                };
                Ok(vec![PostEvent::CommentAdded {
                    post_id,
                    comment_id: *comment_id,
                    author_id: author.user_id,
                    author_name,
                    anonymous: *anonymous,
                    is_host: self.hosts_anonymously(author.user_id, *anonymous),
                    body: body.as_str().to_owned(),
                    reply_to: *reply_to,
                }])
            }
            PostCommand::DeleteComment { comment_id, actor } => {
                let post_id = self.live()?;
                let comment = match self.comments.get(comment_id) {
                    Some(c) if !c.deleted => c,
                    _ => return Err(PostError::CommentNotFound),
                };
                self.may_moderate(actor, comment.author_id)?;
                Ok(vec![PostEvent::CommentDeleted {
                    post_id,
                    comment_id: *comment_id,
                    deleted_by: actor.user_id,
                    by_admin: actor.user_id != comment.author_id,
                }])
            }
            PostCommand::Delete { actor } => {
                let post_id = self.live()?;
                let owner = self.author_id.ok_or(PostError::NotFound)?;
                self.may_moderate(actor, owner)?;
                Ok(vec![PostEvent::PostDeleted {
                    post_id,
                    deleted_by: actor.user_id,
                    by_admin: actor.user_id != owner,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &PostEvent) {
        match event {
            PostEvent::PostPublished {
                post_id,
                author_id,
                anonymous,
                ..
            } => {
                self.id = Some(*post_id);
                self.author_id = Some(*author_id);
                self.anonymous = *anonymous;
            }
            PostEvent::CommentAdded {
                comment_id,
                author_id,
                author_name,
                anonymous,
                is_host,
                ..
            } => {
                self.comments.insert(
                    *comment_id,
                    Comment {
                        author_id: *author_id,
                        deleted: false,
                    },
                );
                if *anonymous && !*is_host && !self.pseudonyms.contains_key(author_id) {
                    self.pseudonyms.insert(*author_id, author_name.clone());
                    self.used_names.insert(author_name.clone());
                }
            }
            PostEvent::CommentDeleted { comment_id, .. } => {
                if let Some(c) = self.comments.get_mut(comment_id) {
                    c.deleted = true;
                }
            }
            PostEvent::PostDeleted { .. } => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn actor(n: u128) -> Actor {
        Actor {
            user_id: UserId::new(Uuid::from_u128(n)),
            username: format!("user{n}"),
            is_admin: false,
        }
    }

    fn admin() -> Actor {
        Actor {
            is_admin: true,
            ..actor(999_999)
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    /// Given these commands were accepted, when `cmd` is decided, then the result is returned
    /// (and, if accepted, applied).
    struct Given {
        post: Post,
        services: PostServices,
    }

    fn given(cmds: &[PostCommand]) -> Given {
        let mut g = Given {
            post: Post::default(),
            services: PostServices::default(),
        };
        for c in cmds {
            g.when(c).expect("given commands are accepted");
        }
        g
    }

    impl Given {
        fn when(&mut self, cmd: &PostCommand) -> Result<Vec<PostEvent>, PostError> {
            let events = self.post.decide(cmd, &self.services)?;
            for e in &events {
                self.post.evolve(e);
            }
            Ok(events)
        }

        fn comment(&mut self, by: &Actor, anonymous: bool) -> String {
            self.comment_as(CommentId::new(Uuid::now_v7()), by, anonymous)
        }

        fn comment_as(&mut self, comment_id: CommentId, by: &Actor, anonymous: bool) -> String {
            let cmd = PostCommand::AddComment {
                comment_id,
                author: by.clone(),
                body: CommentBody::parse("hi").unwrap(),
                anonymous,
                reply_to: None,
                at: at(),
            };
            match self.when(&cmd).unwrap().as_slice() {
                [PostEvent::CommentAdded { author_name, .. }] => author_name.clone(),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn publish(by: &Actor, anonymous: bool) -> PostCommand {
        PostCommand::Publish {
            post_id: PostId::new(Uuid::from_u128(42)),
            author: by.clone(),
            title: None,
            body: PostBody::parse("body").unwrap(),
            tags: vec![],
            anonymous,
            at: at(),
        }
    }

    #[test]
    fn anonymous_post_shows_the_host_name_and_named_post_the_username() {
        let events = given(&[]).when(&publish(&actor(1), true)).unwrap();
        assert!(
            matches!(&events[0], PostEvent::PostPublished { author_name, .. } if author_name == "洞主")
        );
        let events = given(&[]).when(&publish(&actor(1), false)).unwrap();
        assert!(
            matches!(&events[0], PostEvent::PostPublished { author_name, .. } if author_name == "user1")
        );
    }

    #[test]
    fn commenters_get_names_in_order_of_first_anonymous_comment() {
        let mut g = given(&[publish(&actor(1), true)]);
        assert_eq!(g.comment(&actor(2), true), "Alice");
        assert_eq!(g.comment(&actor(1), true), "洞主");
        assert_eq!(g.comment(&actor(3), false), "user3");
        assert_eq!(g.comment(&actor(3), true), "Bob");
        assert_eq!(g.comment(&actor(2), true), "Alice");
    }

    /// The host marker and name for each of the four combinations of an anonymous or named
    /// post and an anonymous or named comment by the post's author.
    #[test]
    fn only_the_anonymous_host_commenting_anonymously_is_marked_host() {
        for (post_anonymous, comment_anonymous, name, host) in [
            (true, true, "洞主", true),
            (true, false, "user1", false),
            (false, true, "Alice", false),
            (false, false, "user1", false),
        ] {
            let mut g = given(&[publish(&actor(1), post_anonymous)]);
            let events = g
                .when(&PostCommand::AddComment {
                    comment_id: CommentId::new(Uuid::now_v7()),
                    author: actor(1),
                    body: CommentBody::parse("hi").unwrap(),
                    anonymous: comment_anonymous,
                    reply_to: None,
                    at: at(),
                })
                .unwrap();
            let PostEvent::CommentAdded {
                author_name,
                is_host,
                ..
            } = &events[0]
            else {
                panic!("unexpected {events:?}");
            };
            let case = (post_anonymous, comment_anonymous);
            assert_eq!(author_name, name, "{case:?}");
            assert_eq!(*is_host, host, "{case:?}");
        }
    }

    #[test]
    fn the_author_of_a_named_post_keeps_one_pseudonym_and_nobody_shares_it() {
        let mut g = given(&[publish(&actor(1), false)]);
        assert_eq!(g.comment(&actor(2), true), "Alice");
        assert_eq!(g.comment(&actor(1), true), "Bob");
        assert_eq!(g.comment(&actor(3), true), "Carol");
        assert_eq!(g.comment(&actor(1), true), "Bob");
    }

    #[test]
    fn a_pseudonym_survives_deleting_the_comment() {
        let mut g = given(&[publish(&actor(1), false)]);
        assert_eq!(g.comment(&actor(2), true), "Alice");
        let comment_id = *g.post.comments.keys().next().unwrap();
        g.when(&PostCommand::DeleteComment {
            comment_id,
            actor: actor(2),
        })
        .unwrap();
        assert_eq!(g.comment(&actor(3), true), "Bob");
        assert_eq!(g.comment(&actor(2), true), "Alice");
    }

    #[test]
    fn only_authors_and_admins_delete() {
        let mut g = given(&[publish(&actor(1), true)]);
        g.comment(&actor(2), true);
        let comment_id = *g.post.comments.keys().next().unwrap();
        let by_other = PostCommand::DeleteComment {
            comment_id,
            actor: actor(3),
        };
        assert_eq!(g.when(&by_other), Err(PostError::NotAllowed));
        assert_eq!(
            g.when(&PostCommand::Delete { actor: actor(2) }),
            Err(PostError::NotAllowed)
        );
        let by_admin = PostCommand::DeleteComment {
            comment_id,
            actor: admin(),
        };
        assert!(matches!(
            g.when(&by_admin).unwrap()[0],
            PostEvent::CommentDeleted { by_admin: true, .. }
        ));
        assert_eq!(g.when(&by_admin), Err(PostError::CommentNotFound));
        g.when(&PostCommand::Delete { actor: actor(1) }).unwrap();
        assert_eq!(
            g.when(&PostCommand::Delete { actor: actor(1) }),
            Err(PostError::Deleted)
        );
        let late = PostCommand::AddComment {
            comment_id: CommentId::new(Uuid::now_v7()),
            author: actor(4),
            body: CommentBody::parse("late").unwrap(),
            anonymous: true,
            reply_to: None,
            at: at(),
        };
        assert_eq!(g.when(&late), Err(PostError::Deleted));
    }

    #[test]
    fn replies_need_a_live_target_and_posts_are_created_once() {
        let mut g = given(&[publish(&actor(1), true)]);
        assert_eq!(
            g.when(&publish(&actor(1), true)),
            Err(PostError::AlreadyExists)
        );
        let reply = PostCommand::AddComment {
            comment_id: CommentId::new(Uuid::now_v7()),
            author: actor(2),
            body: CommentBody::parse("re").unwrap(),
            anonymous: false,
            reply_to: Some(CommentId::new(Uuid::from_u128(7))),
            at: at(),
        };
        assert_eq!(g.when(&reply), Err(PostError::ReplyTargetNotFound));
        let missing = PostCommand::Delete { actor: actor(1) };
        assert_eq!(given(&[]).when(&missing), Err(PostError::NotFound));
    }

    #[test]
    fn events_round_trip_through_their_wire_form() {
        let mut g = given(&[publish(&actor(1), true)]);
        g.comment(&actor(2), true);
        let event = g.post.decide(&publish(&actor(1), true), &g.services);
        assert!(event.is_err());
        let e = PostEvent::CommentAdded {
            post_id: PostId::new(Uuid::from_u128(1)),
            comment_id: CommentId::new(Uuid::from_u128(2)),
            author_id: UserId::new(Uuid::from_u128(3)),
            author_name: "Alice".into(),
            anonymous: true,
            is_host: false,
            body: "b".into(),
            reply_to: None,
        };
        let (name, data) = e.encode();
        assert_eq!(name, "CommentAdded");
        assert_eq!(PostEvent::decode(name, 1, &data).unwrap(), e);
        assert!(PostEvent::decode(name, 9, &data).is_err());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Comment { user: u8, anonymous: bool },
        DeleteOwnComment { user: u8 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..60, any::<bool>()).prop_map(|(user, anonymous)| Step::Comment { user, anonymous }),
            1 => (0u8..60).prop_map(|user| Step::DeleteOwnComment { user }),
        ]
    }

    proptest! {
        /// Any interleaving of commenters: each anonymous user keeps one name under the post, no
        /// two users share one, nobody but the host gets the host name, and names are handed out
        /// in the scheme's order of first anonymous comment.
        #[test]
        fn the_pseudonym_rule_holds_for_any_interleaving(host_anonymous in any::<bool>(), steps in prop::collection::vec(step(), 1..300)) {
            // User 0 is the post's author.
            let mut g = given(&[publish(&actor(0), host_anonymous)]);
            let mut names: HashMap<u8, String> = HashMap::new();
            let mut first_seen: Vec<u8> = Vec::new();
            let mut own_comments: HashMap<u8, Vec<CommentId>> = HashMap::new();
            for s in steps {
                match s {
                    Step::Comment { user, anonymous } => {
                        let id = CommentId::new(Uuid::now_v7());
                        let name = g.comment_as(id, &actor(user as u128), anonymous);
                        own_comments.entry(user).or_default().push(id);
                        if !anonymous {
                            prop_assert_eq!(name, format!("user{user}"));
                            continue;
                        }
                        if user == 0 && host_anonymous {
                            prop_assert_eq!(&name, "洞主");
                            continue;
                        }
                        prop_assert_ne!(&name, "洞主");
                        match names.get(&user) {
                            Some(prev) => prop_assert_eq!(prev, &name),
                            None => {
                                prop_assert!(!names.values().any(|n| n == &name), "{} reused", name);
                                prop_assert_eq!(&name, &PseudonymScheme::default().name_at(first_seen.len()));
                                first_seen.push(user);
                                names.insert(user, name);
                            }
                        }
                    }
                    Step::DeleteOwnComment { user } => {
                        if let Some(id) = own_comments.get_mut(&user).and_then(|v| v.pop()) {
                            g.when(&PostCommand::DeleteComment { comment_id: id, actor: actor(user as u128) }).unwrap();
                        }
                    }
                }
            }
        }
    }
}
