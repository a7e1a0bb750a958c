//! The `feed` projection: one public row per live post, newest first, with its comment count.

use domain::post::PostEvent;
use domain::{Envelope, Event};

use crate::{Change, Projection};

pub struct Feed;

impl Projection for Feed {
    fn name(&self) -> &'static str {
        "feed"
    }

    fn version(&self) -> u32 {
        1
    }

    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        let Event::Post(event) = event else {
            return vec![];
        };
        match event {
            PostEvent::PostPublished {
                post_id,
                author_name,
                anonymous,
                title,
                body,
                tags,
                ..
            } => {
                vec![Change::InsertPost {
                    post_id: *post_id,
                    position: envelope.position,
                    author_name: author_name.clone(),
                    anonymous: *anonymous,
                    title: title.clone(),
                    body: body.clone(),
                    tags: tags.clone(),
                    created_at: envelope.occurred_at,
                }]
            }
            PostEvent::CommentAdded { post_id, .. } => {
                vec![Change::CountComment {
                    post_id: *post_id,
                    delta: 1,
                    active_at: Some(envelope.occurred_at),
                }]
            }
            PostEvent::CommentDeleted { post_id, .. } => {
                vec![Change::CountComment {
                    post_id: *post_id,
                    delta: -1,
                    active_at: None,
                }]
            }
            PostEvent::PostDeleted { post_id, .. } => {
                vec![Change::DeletePost { post_id: *post_id }]
            }
        }
    }
}
