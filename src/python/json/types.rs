//! Every value that is not an exact str, int, float, bool, None, dict, list or
//! tuple: subclasses of those (written as their base), dates and times, UUIDs,
//! enum members (as their value), dataclass instances (as objects, fields in
//! order), and the `default=` hook for anything else; in that order of checks.
//!
//! Unlike the fast paths, this may run Python code: a `default=` hook, an enum's
//! `value`, a dataclass's attributes, a tzinfo's `utcoffset`. Whatever it keeps
//! across such code it holds by a strong reference, and it moves the walk's
//! `epoch` so that the containers being walked are read again afterwards.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyDate, PyDateTime, PyDelta, PyDict, PyFloat, PyInt, PyList, PyString, PyTime, PyTuple, PyType, PyTzInfo,
    PyTzInfoAccess,
};
#[cfg(not(Py_LIMITED_API))]
use pyo3::types::{PyDateAccess, PyDeltaAccess, PyTimeAccess};

#[cfg(Py_LIMITED_API)]
use limited::{PyDateAccess, PyDeltaAccess, PyTimeAccess};

use super::borrowed;
use super::datetime::{self, ShortText};
use super::error::{SerializeError, Step};
use super::walk::{type_name, Serializer};
use super::{Sink, MAX_DEPTH};

static UUID_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `datetime.datetime`, `datetime.date` and `datetime.time`, compared by address.
static DATE_TYPES: PyOnceLock<[Py<PyType>; 3]> = PyOnceLock::new();
static ENUM_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `types.GetSetDescriptorType`: what a class's own `__dict__` attribute is.
static GETSET_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `dataclasses._FIELD`: the field kind of a real field (not a ClassVar or InitVar).
static DATACLASS_FIELD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl<'py, S: Sink> Serializer<'_, '_, 'py, S> {
    /// Everything `value` does not write itself (see the module docs).
    #[cold]
    #[inline(never)]
    pub(super) fn other(&mut self, obj: &Bound<'py, PyAny>, depth: u32) -> Result<(), SerializeError> {
        // The last dataclass seen, this call or an earlier one, when its
        // instances' `__dict__` is read without Python code (two compares of
        // the type's address first): the walk need not read its containers
        // again. Before the dates: a list of one dataclass comes here per item.
        if let Some(dict) = self.known_dataclass_dict(obj) {
            return self.dict_items::<true>(dict.as_borrowed(), depth);
        }
        // Exact dates and times next, by address: the most frequent here, and
        // they run no Python code (but for an aware datetime's `utcoffset`, which
        // `datetime` deals with), so the walk need not read its containers again.
        let ty = obj.get_type_ptr();
        if let Ok([datetime_type, date_type, time_type]) = date_types(obj.py()) {
            // (Each cast then succeeds at its first, exact-type compare.)
            if ty == datetime_type.as_ptr().cast() {
                if let Ok(dt) = obj.cast::<PyDateTime>() {
                    return self.datetime(dt);
                }
            } else if ty == date_type.as_ptr().cast() {
                if let Ok(d) = obj.cast::<PyDate>() {
                    return self.date(d);
                }
            } else if ty == time_type.as_ptr().cast() {
                if let Ok(t) = obj.cast::<PyTime>() {
                    return self.time(t);
                }
            }
        }
        // numpy's scalars, once numpy has been seen: a plain number inside
        // (`numpy_scalar` deals with any Python code it runs).
        if let Some(written) = self.numpy_scalar(obj) {
            return written;
        }
        // From here on Python code may run (a hook, an attribute), so the
        // containers being walked are read again once this returns.
        self.epoch += 1;
        let result = self.other_value(obj, depth);
        self._gc.renew();
        result
    }

    /// `other`'s work. Where Python code has run and a walk follows, the GC is
    /// paused again first (`GcPause::renew`).
    fn other_value(&mut self, obj: &Bound<'py, PyAny>, depth: u32) -> Result<(), SerializeError> {
        let py = obj.py();
        // Exact UUIDs and the last dataclass seen, by address, before the
        // subclass checks below.
        let ty = obj.get_type_ptr().cast::<pyo3::ffi::PyObject>();
        if UUID_TYPE.get(py).is_some_and(|uuid| uuid.as_ptr() == ty) {
            return self.uuid(obj);
        }
        if let Some(kind) = self.dataclass.take_if(|kind| kind.class.as_ptr() == ty) {
            let written = self.dataclass(obj, &kind, depth);
            // Put back unless a nested dataclass took the place.
            self.dataclass.get_or_insert(kind);
            return written;
        }
        if let Ok(s) = obj.cast::<PyString>() {
            return self.string(s.as_borrowed());
        }
        if obj.is_instance_of::<PyInt>() {
            return self.int(obj.as_borrowed(), true);
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
            return self.float(f.value());
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            return self.dict(d.as_borrowed(), depth);
        }
        if let Ok(l) = obj.cast::<PyList>() {
            return self.list(l.as_borrowed(), depth);
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            return self.tuple(t, depth);
        }
        // A datetime is also a date: it comes first.
        if let Ok(dt) = obj.cast::<PyDateTime>() {
            return self.datetime(dt);
        }
        if let Ok(d) = obj.cast::<PyDate>() {
            return self.date(d);
        }
        if let Ok(t) = obj.cast::<PyTime>() {
            return self.time(t);
        }
        if borrowed::is_subtype(obj.as_borrowed(), imported_type(py, &UUID_TYPE, "uuid", "UUID")?) {
            return self.uuid(obj);
        }
        if borrowed::is_subtype(obj.as_borrowed(), imported_type(py, &ENUM_TYPE, "enum", "Enum")?) {
            let value = obj.getattr(intern!(py, "value")).map_err(|err| raised("the enum member's value", err))?;
            self._gc.renew();
            return self.value(value.as_borrowed(), Self::enter(depth)?);
        }
        if let Some(written) = self.numpy(obj, depth) {
            return written;
        }
        if let Some(kind) = self.dataclass_kind(obj) {
            return self.dataclass(obj, &kind, depth);
        }
        if let Some(default) = self.default.clone() {
            return self.with_default(&default, obj, depth);
        }
        Err(SerializeError::value(format!("Type is not JSON serializable: {}", type_name(obj))))
    }

    /// Writes `"text"` (short text that needs no escape).
    fn quoted(&mut self, text: &[u8]) -> Result<(), SerializeError> {
        self.reserve(text.len() + 2)?;
        let pos = self.pos;
        self.buf.set(pos, b'"');
        self.buf[pos + 1..pos + 1 + text.len()].put(text);
        self.buf.set(pos + 1 + text.len(), b'"');
        self.pos = pos + text.len() + 2;
        Ok(())
    }

    /// `YYYY-MM-DD`.
    fn date(&mut self, d: &Bound<'py, PyDate>) -> Result<(), SerializeError> {
        let mut text = ShortText::new();
        datetime::date(&mut text, year(d.get_year()), d.get_month().into(), d.get_day().into());
        self.quoted(text.as_bytes())
    }

    /// `YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM]`: the offset only when the datetime
    /// is aware (a tzinfo whose `utcoffset` gives None counts as UTC, as in orjson).
    fn datetime(&mut self, dt: &Bound<'py, PyDateTime>) -> Result<(), SerializeError> {
        let mut text = ShortText::new();
        datetime::date(&mut text, year(dt.get_year()), dt.get_month().into(), dt.get_day().into());
        text.push(b'T');
        datetime::time(
            &mut text,
            dt.get_hour().into(),
            dt.get_minute().into(),
            dt.get_second().into(),
            dt.get_microsecond(),
        );
        let tzinfo = dt.get_tzinfo();
        let utc = PyTzInfo::utc(dt.py()).ok();
        if tzinfo.as_ref().zip(utc).is_some_and(|(tz, utc)| tz.is(&*utc)) {
            // `timezone.utc` itself: its offset is known without a call.
            datetime::offset(&mut text, 0, 0);
        } else if tzinfo.is_some() {
            // Python code runs: the walk reads its containers again after this.
            self.epoch += 1;
            let offset = dt.call_method0(intern!(dt.py(), "utcoffset"));
            self._gc.renew();
            let offset = offset.map_err(|err| raised("the datetime's utcoffset()", err))?;
            if offset.is_none() {
                datetime::offset(&mut text, 0, 0);
            } else {
                let delta = offset.cast::<PyDelta>().map_err(|_| {
                    SerializeError::value(format!(
                        "the datetime's utcoffset() returned {}, not a timedelta",
                        type_name(&offset)
                    ))
                })?;
                datetime::offset(&mut text, delta.get_days(), delta.get_seconds());
            }
        }
        self.quoted(text.as_bytes())
    }

    /// `HH:MM:SS[.ffffff]`; a time with a tzinfo is refused, as orjson does.
    fn time(&mut self, t: &Bound<'py, PyTime>) -> Result<(), SerializeError> {
        if t.get_tzinfo().is_some() {
            return Err(SerializeError::value("datetime.time must not have tzinfo set".to_owned()));
        }
        let mut text = ShortText::new();
        datetime::time(
            &mut text,
            t.get_hour().into(),
            t.get_minute().into(),
            t.get_second().into(),
            t.get_microsecond(),
        );
        self.quoted(text.as_bytes())
    }

    /// The UUID's 128-bit value (its `int`), in the canonical form.
    fn uuid(&mut self, obj: &Bound<'py, PyAny>) -> Result<(), SerializeError> {
        let int = obj.getattr(intern!(obj.py(), "int")).map_err(|err| raised("the UUID's int", err))?;
        let value = match borrowed::uint128(int.as_borrowed(), self.layouts) {
            Some(value) => value,
            None => int.extract::<u128>().map_err(|err| raised("the UUID's int", err))?,
        };
        self.quoted(&datetime::uuid_text(value))
    }

    /// `obj.__dict__` if `obj`'s class is the last dataclass seen (this call,
    /// or by its [`ClassStamp`] an earlier call on this thread) and its
    /// instances' `__dict__` is read directly; `None` otherwise.
    #[inline(always)]
    fn known_dataclass_dict(&mut self, obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyDict>> {
        if let Some(kind) = &self.dataclass {
            return kind.plain_dict(obj);
        }
        let stamp = self.known_class?;
        if obj.get_type_ptr() as usize != stamp.address || ClassStamp::of(obj.get_type_ptr()) != Some(stamp) {
            return None;
        }
        instance_dict::get(obj)
    }

    /// How `obj`'s class writes its instances, if it is a dataclass: from the
    /// one-entry cache when the class is the last one seen.
    fn dataclass_kind(&mut self, obj: &Bound<'py, PyAny>) -> Option<DataclassKind> {
        let py = obj.py();
        let ty = obj.get_type();
        if let Some(kind) = &self.dataclass {
            if kind.class.is(&ty) {
                return Some(kind.clone_ref(py));
            }
        }
        // Before the lookups, which may run Python code that changes the class:
        // a class changed meanwhile is not stamped (see below).
        let stamp = ClassStamp::of(ty.as_type_ptr());
        let fields = ty.getattr(intern!(py, "__dataclass_fields__")).ok()?.cast_into::<PyDict>().ok()?;
        // orjson's rule: the instance's `__dict__` unless the class itself has `__slots__`.
        let slots = ty.getattr(intern!(py, "__dict__")).and_then(|d| d.contains(intern!(py, "__slots__")));
        let from_dict = !slots.unwrap_or(true);
        let plain_dict = from_dict && plain_dict_access(obj).unwrap_or(false);
        // Remembered across calls (see `ClassStamp`) only when the instances'
        // `__dict__` is read directly: nothing else of the kind is needed then.
        self.known_class = stamp.filter(|&stamp| plain_dict && ClassStamp::of(ty.as_type_ptr()) == Some(stamp));
        let kind = DataclassKind { class: ty.unbind(), fields: fields.unbind(), from_dict, plain_dict };
        self.dataclass = Some(kind.clone_ref(py));
        Some(kind)
    }

    /// A dataclass instance as an object, as orjson writes one: from its
    /// `__dict__` when it has one and its class no `__slots__` (every attribute,
    /// in the dict's order), else its fields in order; either way without the
    /// names that start with `_`.
    fn dataclass(&mut self, obj: &Bound<'py, PyAny>, kind: &DataclassKind, depth: u32) -> Result<(), SerializeError> {
        let py = obj.py();
        if kind.from_dict {
            if let Ok(dict) = obj.getattr(intern!(py, "__dict__")).and_then(|d| Ok(d.cast_into::<PyDict>()?)) {
                self._gc.renew();
                return self.dict_items::<true>(dict.as_borrowed(), depth);
            }
        }
        let depth = Self::enter(depth)?;
        let field_kind = DATACLASS_FIELD
            .get_or_try_init(py, || Ok::<_, PyErr>(py.import("dataclasses")?.getattr("_FIELD")?.unbind()))
            .map_err(|err| raised("dataclasses._FIELD", err))?
            .bind(py);
        // A snapshot of (name, value) pairs, each a strong reference.
        let mut pairs: Vec<(Bound<'py, PyString>, Bound<'py, PyAny>)> = Vec::new();
        for item in kind.fields.bind(py).items().iter() {
            let (name, field): (Bound<'py, PyAny>, Bound<'py, PyAny>) =
                item.extract().map_err(|err| raised("the dataclass's fields", err))?;
            let kind = field.getattr(intern!(py, "_field_type")).map_err(|err| raised("a dataclass field", err))?;
            if !kind.is(field_kind) {
                continue;
            }
            let name = name.cast_into::<PyString>().map_err(|name| not_str_name(name.into_inner().as_any()))?;
            let value = obj
                .getattr(&name)
                .map_err(|err| raised("a dataclass attribute", err).at(Step::Key(name.to_string())))?;
            pairs.push((name, value));
        }
        self._gc.renew();
        self.byte(b'{')?;
        let mut first = true;
        for (name, value) in pairs {
            let text = super::walk::utf8_of(name.as_borrowed())?;
            if text.first() == Some(&b'_') {
                continue;
            }
            if !first {
                self.byte(b',')?;
            }
            first = false;
            self.escaped(text)?;
            self.byte(b':')?;
            self.value(value.as_borrowed(), depth).map_err(|err| err.at(Step::Key(name.to_string_lossy().into())))?;
        }
        self.byte(b'}')
    }

    /// Writes what `default(obj)` returns, refusing a result that is `obj` itself
    /// and hooks nested (each result handed back to the hook) more than
    /// `MAX_DEPTH` deep.
    fn with_default(
        &mut self,
        default: &Bound<'py, PyAny>,
        obj: &Bound<'py, PyAny>,
        depth: u32,
    ) -> Result<(), SerializeError> {
        if self.default_depth >= MAX_DEPTH {
            return Err(SerializeError::value(format!(
                "default= was called on its own results more than {MAX_DEPTH} times (last: {})",
                type_name(obj)
            )));
        }
        let result = default
            .call1((obj,))
            .map_err(|err| SerializeError::caused(format!("default= raised on a {}: {err}", type_name(obj)), err))?;
        if result.is(obj) {
            return Err(SerializeError::value(format!(
                "default= returned its own argument, a {}, which has no JSON form",
                type_name(obj)
            )));
        }
        self.default_depth += 1;
        self._gc.renew();
        let written = self.value(result.as_borrowed(), depth);
        self.default_depth -= 1;
        written
    }
}

/// A class as it was when it was looked at: its address and its version tag,
/// which CPython changes (`PyType_Modified`) whenever the class or one of its
/// bases is changed (an attribute set or deleted, such as `__dataclass_fields__`,
/// `__getattribute__` or `__dict__`; `__bases__` assigned). Tags come from a
/// counter that is never reset, so a class made later at the same address (a
/// class redefined, the old one freed) cannot carry the same tag: the stamp
/// matches only the very class it was taken from, unchanged, and holds no
/// reference to it (the class may be freed meanwhile). 0 is no tag (none given
/// yet, or none left): no stamp then.
///
/// Only classes whose metaclass is exactly `type` are stamped: a metaclass of
/// its own could answer the attribute lookups differently without the class
/// changing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct ClassStamp {
    address: usize,
    version: u32,
}

impl ClassStamp {
    /// The stamp of the class `ty` as it is now, if it has one.
    #[inline(always)]
    #[cfg(not(Py_LIMITED_API))]
    fn of(ty: *mut pyo3::ffi::PyTypeObject) -> Option<Self> {
        // SAFETY: `ty` is a live type object (the type of a live object, which
        // holds a reference to it) and the GIL is held; `ob_type` and
        // `tp_version_tag` are fields of the full (non-limited) `PyTypeObject`
        // layout this build is compiled against, and reading them runs no code.
        let (metatype, version) = unsafe { ((*ty).ob_base.ob_base.ob_type, (*ty).tp_version_tag) };
        let exact_type = metatype == std::ptr::addr_of_mut!(pyo3::ffi::PyType_Type);
        (exact_type && version != 0).then_some(Self { address: ty as usize, version })
    }

    /// No version tag in the stable ABI: no stamp.
    #[inline(always)]
    #[cfg(Py_LIMITED_API)]
    fn of(_ty: *mut pyo3::ffi::PyTypeObject) -> Option<Self> {
        None
    }
}

/// How a dataclass's instances are written (see `Serializer::dataclass`).
pub(super) struct DataclassKind {
    class: Py<PyType>,
    /// The class's `__dataclass_fields__`.
    fields: Py<PyDict>,
    /// From the instance's `__dict__` (the class has no `__slots__`).
    from_dict: bool,
    /// And that `__dict__` is the one object's own attribute lookup finds,
    /// read without running Python code (see [`plain_dict_access`]).
    plain_dict: bool,
}

impl DataclassKind {
    fn clone_ref(&self, py: Python<'_>) -> Self {
        Self {
            class: self.class.clone_ref(py),
            fields: self.fields.clone_ref(py),
            from_dict: self.from_dict,
            plain_dict: self.plain_dict,
        }
    }

    /// `obj.__dict__` if `obj` is an instance of exactly this class and that
    /// attribute is read directly (`plain_dict`); `None` otherwise.
    #[inline]
    fn plain_dict<'py>(&self, obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyDict>> {
        if !self.plain_dict || obj.get_type_ptr().cast::<pyo3::ffi::PyObject>() != self.class.as_ptr() {
            return None;
        }
        instance_dict::get(obj)
    }
}

/// Whether `obj.__dict__`, for `obj` and every other instance of its exact
/// type, is what `PyObject_GenericGetDict` gives, without running Python code:
/// the class keeps object's own attribute lookup (no `__getattribute__` of its
/// own), the first `__dict__` in its MRO is a getset descriptor (the one the
/// interpreter makes for a class with instance dicts, not a property), and on
/// `obj` both ways give the same dict.
fn plain_dict_access(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    use pyo3::PyTypeInfo;
    let py = obj.py();
    let ty = obj.get_type();
    let object = PyAny::type_object(py);
    let getattribute = intern!(py, "__getattribute__");
    if !ty.getattr(getattribute)?.is(&object.getattr(getattribute)?) {
        return Ok(false);
    }
    let name = intern!(py, "__dict__");
    let getset = GETSET_TYPE.import(py, "types", "GetSetDescriptorType")?;
    for class in ty.getattr(intern!(py, "__mro__"))?.cast_into::<PyTuple>()?.iter() {
        let namespace = class.getattr(name)?;
        if namespace.contains(name)? {
            if !namespace.get_item(name)?.get_type().is(getset) {
                return Ok(false);
            }
            break;
        }
    }
    let looked_up = obj.getattr(name)?;
    Ok(instance_dict::get(obj).is_some_and(|dict| dict.is(&looked_up)))
}

/// An instance's `__dict__` through the C API, without an attribute lookup.
mod instance_dict {
    use pyo3::prelude::*;
    use pyo3::types::PyDict;

    /// `obj`'s instance dict (made if it has none yet), or `None` if it has no
    /// room for one or it is not a dict.
    pub(super) fn get<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyDict>> {
        // SAFETY: the GIL is held (`obj` is a `Bound`), `obj` is a live object;
        // PyObject_GenericGetDict returns a new reference or NULL with an
        // exception set (taken and dropped below), and its second argument is
        // unused (NULL is what CPython itself passes).
        let dict = unsafe {
            Bound::from_owned_ptr_or_opt(
                obj.py(),
                pyo3::ffi::PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut()),
            )
        };
        if dict.is_none() {
            drop(PyErr::take(obj.py()));
        }
        dict?.cast_into::<PyDict>().ok()
    }
}

/// `datetime.datetime`, `datetime.date` and `datetime.time`, imported the first time.
fn date_types(py: Python<'_>) -> PyResult<&[Py<PyType>; 3]> {
    DATE_TYPES.get_or_try_init(py, || {
        let module = py.import("datetime")?;
        let get = |name: &str| -> PyResult<Py<PyType>> { Ok(module.getattr(name)?.cast_into::<PyType>()?.unbind()) };
        Ok([get("datetime")?, get("date")?, get("time")?])
    })
}

/// `cell`'s type, imported from `module` the first time.
fn imported_type<'a, 'py>(
    py: Python<'py>,
    cell: &'a PyOnceLock<Py<PyType>>,
    module: &str,
    name: &str,
) -> Result<&'a Bound<'py, PyType>, SerializeError> {
    cell.import(py, module, name).map_err(|err| raised(&format!("{module}.{name}"), err))
}

/// A year as the text wants it (datetime's years are 1 to 9999).
fn year(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

#[cold]
fn raised(what: &str, err: PyErr) -> SerializeError {
    SerializeError::caused(format!("reading {what} raised {err}"), err)
}

#[cold]
fn not_str_name(name: &Bound<'_, PyAny>) -> SerializeError {
    SerializeError::value(format!("a dataclass field name must be str, not {}", type_name(name)))
}

/// The stable ABI has no accessors for the fields of dates, times and timedeltas:
/// these read them as attributes, under the same names as pyo3's accessors. Only the
/// abi3 build uses them. A field that cannot be read (a subclass that overrides it
/// badly) reads as 0.
#[cfg(Py_LIMITED_API)]
mod limited {
    use pyo3::intern;
    use pyo3::prelude::*;
    use pyo3::types::PyString;

    /// The attribute `name`, an interned string: a fresh one per call would miss the
    /// type's attribute cache and cost more than the read itself.
    fn field<T: TryFrom<i64> + Default>(obj: &Bound<'_, impl Sized>, name: &Bound<'_, PyString>) -> T {
        let value = obj.as_any().getattr(name).and_then(|v| v.extract::<i64>()).unwrap_or(0);
        T::try_from(value).unwrap_or_default()
    }

    pub trait PyDateAccess {
        fn get_year(&self) -> i32;
        fn get_month(&self) -> u8;
        fn get_day(&self) -> u8;
    }

    pub trait PyTimeAccess {
        fn get_hour(&self) -> u8;
        fn get_minute(&self) -> u8;
        fn get_second(&self) -> u8;
        fn get_microsecond(&self) -> u32;
    }

    pub trait PyDeltaAccess {
        fn get_days(&self) -> i32;
        fn get_seconds(&self) -> i32;
    }

    impl<T> PyDateAccess for Bound<'_, T> {
        fn get_year(&self) -> i32 {
            field(self, intern!(self.py(), "year"))
        }
        fn get_month(&self) -> u8 {
            field(self, intern!(self.py(), "month"))
        }
        fn get_day(&self) -> u8 {
            field(self, intern!(self.py(), "day"))
        }
    }

    impl<T> PyTimeAccess for Bound<'_, T> {
        fn get_hour(&self) -> u8 {
            field(self, intern!(self.py(), "hour"))
        }
        fn get_minute(&self) -> u8 {
            field(self, intern!(self.py(), "minute"))
        }
        fn get_second(&self) -> u8 {
            field(self, intern!(self.py(), "second"))
        }
        fn get_microsecond(&self) -> u32 {
            field(self, intern!(self.py(), "microsecond"))
        }
    }

    impl<T> PyDeltaAccess for Bound<'_, T> {
        fn get_days(&self) -> i32 {
            field(self, intern!(self.py(), "days"))
        }
        fn get_seconds(&self) -> i32 {
            field(self, intern!(self.py(), "seconds"))
        }
    }
}
