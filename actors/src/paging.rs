//! Page sizes and cursors, the same for every list the actors answer.

use crate::error::ActorError;

/// Largest page of any list.
pub const MAX_PAGE: usize = 500;

/// Checks a page size.
pub(crate) fn check_page_limit(limit: usize) -> Result<(), ActorError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(ActorError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(())
}

/// One page of `items` (already past the cursor and filtered): at most `limit`
/// items, and the cursor of the next page when more remain.
pub(crate) fn page_of<T>(
    mut items: impl Iterator<Item = T>,
    limit: usize,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let page: Vec<T> = items.by_ref().take(limit).collect();
    let next = items.next().and_then(|_| page.last().map(&key));
    (page, next)
}
