//! A manager's resolution of a review item.

use super::sql::{Result, exec, get_in, immediate};
use crate::clock::Millis;
use crate::model::row::Row;
use crate::model::state::State;
use rusqlite::{Connection, params};

/// What a resolve request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Done(Box<Row>),
    NotFound,
    /// Only `review` rows can be resolved.
    NotInReview(State),
}

/// A manager closes a review item, deciding it `redeemed` or `rejected` (by default: redeemed
/// when WeChat confirmed a redemption, rejected otherwise). The note and who/when are kept.
pub fn resolve(
    conn: &mut Connection,
    id: i64,
    decision: Option<State>,
    note: &str,
    by: &str,
    at: Millis,
) -> Result<Resolved> {
    let tx = immediate(conn)?;
    let Some(row) = super::queries::get(&tx, id)? else {
        return Ok(Resolved::NotFound);
    };
    if row.state != State::Review {
        return Ok(Resolved::NotInReview(row.state));
    }
    let state = decision.unwrap_or(if row.redeemed_at.is_some() {
        State::Redeemed
    } else {
        State::Rejected
    });
    exec(
        &tx,
        "UPDATE redemptions SET state = ?2, unconfirmed = 0, next_attempt_at = NULL, \
         resolved_at = ?3, resolved_by = ?4, resolution = ?5, updated_at = ?3 WHERE id = ?1",
        params![id, state.as_str(), at, by, note],
    )?;
    let row = get_in(&tx, id)?;
    tx.commit()?;
    Ok(Resolved::Done(Box::new(row)))
}
