//! The Python exception hierarchy, and the one place where the core's errors
//! become Python exceptions. Messages are the core's `Display` text unchanged.
//!
//! ```text
//! Exception
//!  └── ShmError
//!       ├── PayloadTooLarge   a payload over the slot capacity (names size, limit, setting)
//!       ├── CorruptChannel    a file or slot that failed validation
//!       ├── WrongRequest      the slot holds another request's data
//!       ├── SlotBusy          another writer holds the slot, or it kept changing while read
//!       ├── SlotEmpty         the slot (or the snapshot ring) holds nothing yet
//!       ├── ChannelClosed     the channel was closed
//!       ├── ChannelInUse      a live producer holds the channel file's lock (or listens on its socket)
//!       └── NotSerializable   (also a TypeError) a value with no JSON form
//! ```
//! Bad argument values become `ValueError`, file-system failures `OSError` (with
//! their errno, so `FileNotFoundError` and friends work as usual).

use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use super::json::{self, ErrorKind, SerializeError};
use crate::error::{CreateError, OpenError, ReadError, WriteError};

pyo3::create_exception!(
    shmbridge._native,
    ShmError,
    PyException,
    "Base class of every error raised by shmbridge itself."
);
pyo3::create_exception!(
    shmbridge._native,
    PayloadTooLarge,
    ShmError,
    "A payload does not fit its slot; the message names the size, the capacity and the setting that raises it. Nothing was published."
);
pyo3::create_exception!(
    shmbridge._native,
    CorruptChannel,
    ShmError,
    "The channel file or a slot failed validation (bad magic, checksum, truncated file...)."
);
pyo3::create_exception!(
    shmbridge._native,
    WrongRequest,
    ShmError,
    "The slot holds the data of another request than the one asked for."
);
pyo3::create_exception!(
    shmbridge._native,
    SlotBusy,
    ShmError,
    "The slot is being written by another writer, or kept changing while it was read."
);
pyo3::create_exception!(
    shmbridge._native,
    SlotEmpty,
    ShmError,
    "The slot has never been written or its last write was abandoned; or no snapshot is published yet."
);
pyo3::create_exception!(shmbridge._native, ChannelClosed, ShmError, "The channel has been closed.");
pyo3::create_exception!(shmbridge._native, ChannelInUse, ShmError, "A running producer holds the channel file's lock.");

const NOT_SERIALIZABLE_DOC: &str = "A value has no JSON form (unsupported type, a non-str dict key, nesting too deep, a \
     default= hook that failed); the message names it and where it sits. Also a TypeError, like orjson's JSONEncodeError.";

static NOT_SERIALIZABLE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `NotSerializable(ShmError, TypeError)`. `create_exception!` takes a single base,
/// so this one class is made with `type(name, bases, namespace)`, once per interpreter.
pub fn not_serializable_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    NOT_SERIALIZABLE
        .get_or_try_init(py, || {
            let bases = PyTuple::new(py, [py.get_type::<ShmError>(), py.get_type::<PyTypeError>()])?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "shmbridge._native")?;
            namespace.set_item("__doc__", NOT_SERIALIZABLE_DOC)?;
            let class = py.get_type::<PyType>().call1(("NotSerializable", bases, namespace))?;
            Ok(class.cast_into::<PyType>()?.unbind())
        })
        .map(|class| class.bind(py))
}

/// A `NotSerializable` error carrying `message`.
pub fn not_serializable(py: Python<'_>, message: String) -> PyErr {
    match not_serializable_type(py) {
        Ok(class) => PyErr::from_type(class.clone(), message),
        Err(err) => err,
    }
}

fn os_error(source: &std::io::Error, message: String) -> PyErr {
    match source.raw_os_error() {
        // OSError(errno, text) picks the matching subclass (FileNotFoundError, ...).
        Some(errno) => PyOSError::new_err((errno, message)),
        None => PyOSError::new_err(message),
    }
}

impl From<CreateError> for PyErr {
    fn from(err: CreateError) -> Self {
        let message = err.to_string();
        match &err {
            CreateError::InvalidName { .. } | CreateError::InvalidGeometry(_) => PyValueError::new_err(message),
            CreateError::UnsafeDirectory { .. }
            | CreateError::Symlink { .. }
            | CreateError::NotASocket { .. }
            | CreateError::NotOwned { .. } => ShmError::new_err(message),
            CreateError::InUse { .. } | CreateError::SocketInUse { .. } => ChannelInUse::new_err(message),
            CreateError::Allocate { source, .. } | CreateError::Io { source, .. } => os_error(source, message),
        }
    }
}

impl From<OpenError> for PyErr {
    fn from(err: OpenError) -> Self {
        let message = err.to_string();
        match &err {
            OpenError::Missing { .. } => PyFileNotFoundError::new_err(message),
            OpenError::Symlink { .. } | OpenError::NotAFile { .. } => ShmError::new_err(message),
            OpenError::TooSmall { .. }
            | OpenError::BadMagic { .. }
            | OpenError::UnsupportedVersion { .. }
            | OpenError::CorruptHeader { .. }
            | OpenError::Truncated { .. } => CorruptChannel::new_err(message),
            OpenError::Io { source, .. } => os_error(source, message),
        }
    }
}

impl From<ReadError> for PyErr {
    fn from(err: ReadError) -> Self {
        let message = err.to_string();
        match err {
            ReadError::NoSuchSlot { .. } => PyValueError::new_err(message),
            ReadError::Empty { .. } | ReadError::NoSnapshot => SlotEmpty::new_err(message),
            ReadError::WrongRequest { .. } => WrongRequest::new_err(message),
            ReadError::Contended { .. } => SlotBusy::new_err(message),
            ReadError::CorruptSlot { .. }
            | ReadError::Checksum { .. }
            | ReadError::Truncated { .. }
            | ReadError::HeaderChanged
            | ReadError::CorruptSnapshotPointer { .. } => CorruptChannel::new_err(message),
            ReadError::Io(_) => PyOSError::new_err(message),
        }
    }
}

impl From<WriteError> for PyErr {
    fn from(err: WriteError) -> Self {
        let message = err.to_string();
        match err {
            WriteError::NoSuchSlot { .. } | WriteError::ZeroRequestId => PyValueError::new_err(message),
            WriteError::TooLarge { .. } => PayloadTooLarge::new_err(message),
            WriteError::SlotBusy { .. } => SlotBusy::new_err(message),
            WriteError::NoSnapshotRing => ShmError::new_err(message),
            WriteError::Closed => ChannelClosed::new_err(message),
        }
    }
}

/// Adds every exception class to the module.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("ShmError", py.get_type::<ShmError>())?;
    module.add("PayloadTooLarge", py.get_type::<PayloadTooLarge>())?;
    module.add("CorruptChannel", py.get_type::<CorruptChannel>())?;
    module.add("WrongRequest", py.get_type::<WrongRequest>())?;
    module.add("SlotBusy", py.get_type::<SlotBusy>())?;
    module.add("SlotEmpty", py.get_type::<SlotEmpty>())?;
    module.add("ChannelClosed", py.get_type::<ChannelClosed>())?;
    module.add("ChannelInUse", py.get_type::<ChannelInUse>())?;
    module.add("NotSerializable", not_serializable_type(py)?)?;
    Ok(())
}

/// A failed JSON serialization: `NotSerializable` naming the value and its path,
/// or the slot's own error (PayloadTooLarge names the size reached so far).
pub fn serialize_error(py: Python<'_>, err: SerializeError) -> PyErr {
    match err.into_kind() {
        ErrorKind::Sink(err @ WriteError::TooLarge { .. }) => {
            PayloadTooLarge::new_err(format!("JSON output stopped at the slot limit: {err}"))
        }
        ErrorKind::Sink(err) => err.into(),
        ErrorKind::Value { message, steps, cause } => {
            let err = not_serializable(py, json::describe(&message, &steps));
            err.set_cause(py, cause);
            err
        }
    }
}
