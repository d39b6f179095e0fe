//! With the feature "python": pyo3's cfgs (`Py_LIMITED_API`, `Py_3_12`, ...) for
//! src/python/, and a clear refusal to build for an interpreter shmbridge does not
//! support (the message a user of the sdist sees). Without it: nothing.

fn main() {
    // Without this line cargo would rerun the script, and rebuild the crate, whenever
    // any file of the package changed (docs, tests_py, ...). pyo3's own configuration
    // reaches it as a build dependency, which reruns it when that changes.
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "python")]
    python::check_and_configure();
}

#[cfg(feature = "python")]
mod python {
    use pyo3_build_config::{PythonImplementation, PythonVersion};

    /// The oldest CPython the module supports (its buffer protocol and the
    /// serializer's GC pause need 3.11's C API).
    const MIN: PythonVersion = PythonVersion { major: 3, minor: 11 };

    pub fn check_and_configure() {
        pyo3_build_config::use_pyo3_cfgs();
        let config = pyo3_build_config::get();
        let supported = config.implementation() == PythonImplementation::CPython && config.version() >= MIN;
        if !supported {
            eprintln!(
                "shmbridge supports CPython 3.11, 3.12 and 3.13 (a wheel for each), and later CPython \
                 versions through its abi3 build (the cargo feature \"abi3\"); this build is for {} {}. \
                 Install it with one of those interpreters.",
                config.implementation(),
                config.version()
            );
            std::process::exit(1);
        }
    }
}
