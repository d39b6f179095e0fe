//! PyO3 bindings: the module `shmbridge._native`. Bindings only; the channel
//! logic lives in the core modules ([`signal`] runs the signal socket's listener
//! threads around the core's frame format). The `unsafe` code is in [`buffer`] (the
//! buffer protocol) and [`borrowed`] (the JSON serializer's C-API fast paths).

mod borrowed;
mod buffer;
mod channel;
mod errors;
mod json;
mod reader;
mod reservation;
mod signal;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Serializes `obj` to compact JSON bytes with the same serializer as
/// ``Channel.write_json`` (the same bytes as ``orjson.dumps(obj)``).
/// ``default(value)`` is called with each value that has no JSON form; what it
/// returns is written instead.
#[pyfunction]
#[pyo3(signature = (obj, /, *, default = None))]
fn dumps<'py>(obj: &Bound<'py, PyAny>, default: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
    let options = json::Options::new(default)?;
    let mut out = Vec::new();
    json::serialize(obj, &options, &mut out).map_err(|err| errors::serialize_error(obj.py(), err))?;
    Ok(PyBytes::new(obj.py(), &out))
}

/// The `atexit` hook: stops the signal listeners still running (see [`signal`]).
#[pyfunction]
fn _stop_signal_listeners(py: Python<'_>) {
    py.detach(signal::stop_all_at_exit);
}

/// Shared-memory channels between a Python producer and Rust (or Python) readers.
#[pymodule]
#[pyo3(name = "_native")]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<channel::Channel>()?;
    module.add_class::<channel::Receipt>()?;
    module.add_class::<reservation::Reservation>()?;
    module.add_class::<reader::Reader>()?;
    module.add_function(wrap_pyfunction!(dumps, module)?)?;
    let hook = wrap_pyfunction!(_stop_signal_listeners, module)?;
    module.py().import("atexit")?.call_method1("register", (hook,))?;
    errors::register(module)?;
    module.add("MAX_DEPTH", json::MAX_DEPTH)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
