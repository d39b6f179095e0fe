//! Why serialization stopped, and where: the path to the failing value.

use crate::error::WriteError;

/// One step of the path to a value, recorded only when an error unwinds.
#[derive(Debug)]
pub enum Step {
    Index(usize),
    Key(String),
}

/// Why serialization stopped.
#[derive(Debug)]
pub enum ErrorKind {
    /// The sink refused a chunk (the slot is full, or the channel closed).
    Sink(WriteError),
    /// A value has no JSON form. `steps` runs from the value outwards; `cause`
    /// is the Python exception behind it, if one was raised (by `default=`...).
    Value { message: String, steps: Vec<Step>, cause: Option<pyo3::PyErr> },
}

/// Why serialization stopped, boxed: every write returns a `Result` of this,
/// and one pointer is what keeps the success path's returns in a register.
#[derive(Debug)]
pub struct SerializeError(Box<ErrorKind>);

impl SerializeError {
    /// What happened.
    #[must_use]
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    #[cold]
    pub(super) fn sink(err: WriteError) -> Self {
        Self(Box::new(ErrorKind::Sink(err)))
    }

    #[cold]
    pub(super) fn value(message: String) -> Self {
        Self(Box::new(ErrorKind::Value { message, steps: Vec::new(), cause: None }))
    }

    /// A value error raised by Python code the serializer called.
    #[cold]
    pub(super) fn caused(message: String, cause: pyo3::PyErr) -> Self {
        Self(Box::new(ErrorKind::Value { message, steps: Vec::new(), cause: Some(cause) }))
    }

    #[cold]
    pub(super) fn at(mut self, step: Step) -> Self {
        if let ErrorKind::Value { steps, .. } = &mut *self.0 {
            steps.push(step);
        }
        self
    }
}

/// Formats the location of a failing value as `$[3].tags` (or `$` for the root).
#[must_use]
pub fn format_path(steps: &[Step]) -> String {
    const SHOWN: usize = 12;
    let mut out = String::from("$");
    for (shown, step) in steps.iter().rev().enumerate() {
        if shown == SHOWN && steps.len() > SHOWN + 1 {
            out.push_str(&format!("...({} more levels)", steps.len() - SHOWN));
            break;
        }
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) if is_identifier(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Key(k) => out.push_str(&format!("[{k:?}]")),
        }
    }
    out
}

/// Describes a value error for the user: what, and where.
#[must_use]
pub fn describe(message: &str, steps: &[Step]) -> String {
    format!("{message} (at {})", format_path(steps))
}

pub(super) fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_outside_in() {
        let steps = vec![Step::Key("tags".into()), Step::Index(3)];
        assert_eq!(format_path(&steps), "$[3].tags");
        assert_eq!(format_path(&[Step::Key("a b".into())]), "$[\"a b\"]");
        assert_eq!(format_path(&[]), "$");
    }
}
