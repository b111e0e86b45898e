//! Errors as chains of causes: the boxed form a cause is kept in, and how a chain is shown.
//! Every error type of Chronicle keeps its cause as `source()` rather than in its message, and
//! is logged (or recorded, where only text fits) through [`Chain`].

/// Any error kept as the source of one of ours.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Displays an error with every cause after it (`a: b: c`): how errors are logged and how
/// they are recorded where only text fits (a dead letter's reason, a failed rebuild's error).
pub struct Chain<'a, E: ?Sized>(pub &'a E);

impl<E: std::error::Error + ?Sized> std::fmt::Display for Chain<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}
