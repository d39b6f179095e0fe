//! PyO3 bindings: the module `shmbridge._native`. Bindings only; the channel
//! logic lives in the core modules ([`listener`] runs the signal socket's listener
//! threads around the core's frame format). The `unsafe` code is in [`buffer`] (the
//! buffer protocol), [`borrowed`] (the JSON serializer's C-API fast paths),
//! [`array`] (numpy's array interface) and [`entry`] (`dumps`' hand-written
//! argument reading).

mod array;
mod borrowed;
mod buffer;
mod channel;
mod entry;
mod errors;
mod json;
mod listener;
mod reader;
mod receipt;
mod reservation;
mod sync;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// `dumps`: `obj` as compact JSON bytes (the entry point is in [`entry`]).
#[inline(always)]
fn dumps_bytes<'py>(obj: &Bound<'py, PyAny>, options: &json::Options<'py>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = json::BytesOut::new(obj.py());
    json::serialize(obj, options, &mut out).map_err(|err| errors::serialize_error(obj.py(), err))?;
    Ok(out.into_bytes())
}

/// Which objects the serializer reads directly on this interpreter (see
/// `borrowed::Layouts`): `dict`, and `int-3.11` or `int-3.12`; empty in the
/// stable-ABI build, which uses the C API only. For tests and bug reports.
#[pyfunction]
fn _direct_reads(py: Python<'_>) -> Vec<&'static str> {
    borrowed::Layouts::get(py).describe()
}

/// Seconds left of the budget of the signal request being handled on this thread
/// (``serve_uds`` handlers); None on any other thread or without a deadline. For
/// ``shmbridge.Bridge``, which bounds an async handler by it.
#[pyfunction]
fn _remaining_budget() -> Option<f64> {
    listener::remaining_budget().map(|left| left.as_secs_f64())
}

/// The `atexit` hook: stops the signal listeners still running (see [`listener`]).
#[pyfunction]
fn _stop_signal_listeners(py: Python<'_>) {
    py.detach(listener::stop_all_at_exit);
}

/// Shared-memory channels between a Python producer and Rust (or Python) readers.
///
/// `gil_used = true`: the JSON serializer reads objects through borrowed
/// references and relies on the GIL to keep them alive and unchanged, so a
/// free-threaded interpreter turns the GIL back on when it imports the module.
#[pymodule]
#[pyo3(name = "_native", gil_used = true)]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<channel::Channel>()?;
    module.add_class::<receipt::Receipt>()?;
    module.add_class::<reservation::Reservation>()?;
    module.add_class::<reader::Reader>()?;
    entry::register(module)?;
    // Not in `__all__`: a diagnostic, not part of the API `shmbridge` re-exports.
    module.setattr("_direct_reads", wrap_pyfunction!(_direct_reads, module)?)?;
    module.setattr("_remaining_budget", wrap_pyfunction!(_remaining_budget, module)?)?;
    let hook = wrap_pyfunction!(_stop_signal_listeners, module)?;
    module.py().import("atexit")?.call_method1("register", (hook,))?;
    errors::register(module)?;
    module.add("MAX_DEPTH", json::MAX_DEPTH)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
