//! numpy arrays and scalars, as orjson writes them with `OPT_SERIALIZE_NUMPY`:
//! an array as nested lists of its elements (bool, int8 to int64, uint8 to
//! uint64, float16, float32, float64, and datetime64 as a naive datetime), a
//! scalar as its value. Beyond orjson: arrays that are not C-contiguous (read
//! through their strides) and 0-d arrays (written as their one element).
//!
//! numpy is never imported here: its types are looked up in `sys.modules`, so
//! a program that never imports numpy has no numpy values and pays nothing. The
//! elements are read through the array interface (`super::super::array`).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use super::super::array::{ArrayView, Element, Line, ScalarLayout};
use super::datetime::{self, ShortText, Unit};
use super::error::{SerializeError, Step};
use super::escape::short_word;
use super::number::write_int;
use super::out::Out;
use super::walk::{put_word, type_name, Serializer, FLOAT_ROOM, INT_ROOM};
use super::{borrowed, Sink, MAX_DEPTH};

/// numpy's types, once numpy is imported.
struct NumpyTypes {
    ndarray: Py<PyType>,
    /// Every numpy scalar's base.
    generic: Py<PyType>,
    /// The exact scalar types written without the array interface.
    scalars: ScalarTable,
}

/// How a numpy scalar's value is read.
#[derive(Clone, Copy)]
enum Scalar {
    Bool,
    /// A signed int of that many bytes.
    Signed(usize),
    Unsigned(usize),
    /// float16, stored as its bits.
    Half,
    Float32,
    Float64,
}

impl Scalar {
    /// The value's size in bytes.
    fn size(self) -> usize {
        match self {
            Self::Bool => 1,
            Self::Signed(size) | Self::Unsigned(size) => size,
            Self::Half => 2,
            Self::Float32 => 4,
            Self::Float64 => 8,
        }
    }
}

/// A scalar type's kind, and where its instances keep their value if that was
/// confirmed (else the value is read through the number protocol).
struct ScalarType {
    kind: Scalar,
    layout: Option<ScalarLayout>,
}

/// Slots of [`ScalarTable`]: a power of two, at least twice the types kept, so
/// that a probe soon meets an empty slot.
const SLOTS: usize = 32;

/// The scalar types by address, in an open-addressing table: a numpy scalar
/// and any other value (which is also looked up here) are told apart in a
/// probe or two.
struct ScalarTable {
    /// Type addresses, 0 for an empty slot.
    addresses: [usize; SLOTS],
    types: [Option<ScalarType>; SLOTS],
}

impl ScalarTable {
    fn home(address: usize) -> usize {
        // Fibonacci hashing: the top bits of the product mix every bit of the address.
        ((address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as usize
    }

    #[inline(always)]
    fn get(&self, address: usize) -> Option<&ScalarType> {
        let mut slot = Self::home(address);
        loop {
            match self.addresses[slot] {
                a if a == address => return self.types[slot].as_ref(),
                0 => return None,
                _ => slot = (slot + 1) % SLOTS,
            }
        }
    }

    /// Adds `ty` unless it is there already (numpy's aliases, such as `longlong`
    /// for `int64`) or the table is half full.
    fn insert(&mut self, address: usize, ty: ScalarType) {
        if self.addresses.iter().filter(|&&a| a != 0).count() >= SLOTS / 2 {
            return;
        }
        let mut slot = Self::home(address);
        while self.addresses[slot] != 0 {
            if self.addresses[slot] == address {
                return;
            }
            slot = (slot + 1) % SLOTS;
        }
        self.addresses[slot] = address;
        self.types[slot] = Some(ty);
    }
}

static NUMPY_TYPES: PyOnceLock<NumpyTypes> = PyOnceLock::new();

/// numpy's types if numpy has been imported (by anyone), else `None`: looked up
/// again next time until it is.
fn numpy_types(py: Python<'_>) -> Option<&NumpyTypes> {
    if let Some(types) = NUMPY_TYPES.get(py) {
        return Some(types);
    }
    let modules = py.import(intern!(py, "sys")).ok()?.getattr(intern!(py, "modules")).ok()?;
    let numpy = modules.cast_into::<PyDict>().ok()?.get_item(intern!(py, "numpy")).ok()??;
    // A numpy still being imported may not have them yet: not kept then.
    let get = |name: &str| numpy.getattr(name).ok()?.cast_into::<PyType>().ok();
    let kinds = [
        (Scalar::Bool, &["bool_"][..]),
        (Scalar::Signed(1), &["int8"]),
        (Scalar::Signed(2), &["int16"]),
        (Scalar::Signed(4), &["int32"]),
        (Scalar::Signed(8), &["int64", "longlong"]),
        (Scalar::Unsigned(1), &["uint8"]),
        (Scalar::Unsigned(2), &["uint16"]),
        (Scalar::Unsigned(4), &["uint32"]),
        (Scalar::Unsigned(8), &["uint64", "ulonglong"]),
        (Scalar::Half, &["float16"]),
        (Scalar::Float32, &["float32"]),
        (Scalar::Float64, &["float64"]),
    ];
    let mut scalars = ScalarTable { addresses: [0; SLOTS], types: [const { None }; SLOTS] };
    for (kind, names) in kinds {
        for name in names {
            let ty = get(name)?;
            let layout = ScalarLayout::new(&ty, kind.size()).filter(|layout| layout_holds(&ty, kind, layout));
            scalars.insert(ty.as_ptr() as usize, ScalarType { kind, layout });
        }
    }
    let types = NumpyTypes { ndarray: get("ndarray")?.unbind(), generic: get("generic")?.unbind(), scalars };
    let _ = NUMPY_TYPES.set(py, types);
    NUMPY_TYPES.get(py)
}

/// Whether reading instances of `ty` through `layout` gives the values the
/// number protocol gives, on a few made for the purpose.
fn layout_holds(ty: &Bound<'_, PyType>, kind: Scalar, layout: &ScalarLayout) -> bool {
    let probes: &[f64] = match kind {
        Scalar::Bool => &[0.0, 1.0],
        Scalar::Signed(_) => &[0.0, 1.0, -2.0, 100.0, -117.0],
        Scalar::Unsigned(_) => &[0.0, 1.0, 2.0, 100.0, 201.0],
        Scalar::Half | Scalar::Float32 | Scalar::Float64 => &[0.0, 1.5, -2.25, 1e-3, 65504.0],
    };
    probes.iter().all(|&probe| {
        let Ok(sample) = ty.call1((probe,)) else { return false };
        let direct = read_direct(kind, layout, sample.as_borrowed());
        let api = read_api(kind, &sample).ok();
        matches!((direct, api), (Some(d), Some(a)) if d.same(a))
    })
}

/// A numpy scalar's value, widened.
#[derive(Clone, Copy)]
enum Value {
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    /// A float16 or float32, widened exactly.
    Float32(f32),
    Float64(f64),
}

impl Value {
    /// The same value (floats by their bits).
    fn same(self, other: Self) -> bool {
        match (self, other) {
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Signed(a), Self::Signed(b)) => a == b,
            (Self::Unsigned(a), Self::Unsigned(b)) => a == b,
            (Self::Float32(a), Self::Float32(b)) => a.to_bits() == b.to_bits(),
            (Self::Float64(a), Self::Float64(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

/// The value of `obj`, of the type `layout` is for, read from the object.
#[inline(always)]
fn read_direct(kind: Scalar, layout: &ScalarLayout, obj: Borrowed<'_, '_, PyAny>) -> Option<Value> {
    Some(match kind {
        Scalar::Bool => Value::Bool(layout.read::<u8>(obj)? != 0),
        Scalar::Signed(1) => Value::Signed(layout.read::<i8>(obj)?.into()),
        Scalar::Signed(2) => Value::Signed(layout.read::<i16>(obj)?.into()),
        Scalar::Signed(4) => Value::Signed(layout.read::<i32>(obj)?.into()),
        Scalar::Signed(_) => Value::Signed(layout.read::<i64>(obj)?),
        Scalar::Unsigned(1) => Value::Unsigned(layout.read::<u8>(obj)?.into()),
        Scalar::Unsigned(2) => Value::Unsigned(layout.read::<u16>(obj)?.into()),
        Scalar::Unsigned(4) => Value::Unsigned(layout.read::<u32>(obj)?.into()),
        Scalar::Unsigned(_) => Value::Unsigned(layout.read::<u64>(obj)?),
        Scalar::Half => Value::Float32(f16_to_f32(layout.read::<u16>(obj)?)),
        Scalar::Float32 => Value::Float32(layout.read::<f32>(obj)?),
        Scalar::Float64 => Value::Float64(layout.read::<f64>(obj)?),
    })
}

/// The value of `obj` through the C API's number protocol (numpy's own code).
fn read_api(kind: Scalar, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    Ok(match kind {
        Scalar::Bool => Value::Bool(obj.is_truthy()?),
        Scalar::Signed(_) => Value::Signed(obj.extract::<i64>()?),
        Scalar::Unsigned(_) => Value::Unsigned(obj.extract::<u64>()?),
        // `__float__` widens exactly, so the narrowing gives the value back.
        Scalar::Half | Scalar::Float32 => Value::Float32(obj.extract::<f64>()? as f32),
        Scalar::Float64 => Value::Float64(obj.extract::<f64>()?),
    })
}

/// How an array's elements are read and written.
enum Kind {
    Bool,
    Signed,
    Unsigned,
    Float,
    Datetime(Unit),
}

impl<'py, S: Sink> Serializer<'_, '_, 'py, S> {
    /// Writes `obj` if it is an exact `numpy.ndarray` or a numpy scalar of a kind
    /// written; `None` if it is neither, and for an array that cannot be written
    /// when there is a `default=` hook to hand it to (as orjson does).
    pub(super) fn numpy(&mut self, obj: &Bound<'py, PyAny>, depth: u32) -> Option<Result<(), SerializeError>> {
        let py = obj.py();
        let types = numpy_types(py)?;
        let array = obj.get_type_ptr().cast::<pyo3::ffi::PyObject>() == types.ndarray.as_ptr();
        if !array && !borrowed::is_subtype(obj.as_borrowed(), types.generic.bind(py)) {
            return None;
        }
        let refusable = array && self.default.is_none();
        let refuse = |message: String| {
            if refusable {
                Some(Err(SerializeError::value(message)))
            } else {
                None
            }
        };
        let view = match ArrayView::new(obj) {
            Ok(view) => view,
            Err(err) => return refuse(format!("reading the numpy array's __array_struct__ raised {err}")),
        };
        let kind = match (view.kind, view.itemsize) {
            (b'b', 1) => Kind::Bool,
            (b'i', 1 | 2 | 4 | 8) => Kind::Signed,
            (b'u', 1 | 2 | 4 | 8) => Kind::Unsigned,
            (b'f', 2 | 4 | 8) => Kind::Float,
            (b'M', 8) => match datetime_unit(obj) {
                Ok(unit) => Kind::Datetime(unit),
                Err(message) => return refuse(message),
            },
            _ => return refuse(format!("unsupported datatype in numpy array: {}", dtype_text(obj))),
        };
        if !view.native {
            return refuse(format!("numpy array is not in native byte order: {}", dtype_text(obj)));
        }
        if depth as usize + view.shape.len() > MAX_DEPTH as usize {
            return Some(Err(SerializeError::value(format!("nesting deeper than {MAX_DEPTH} levels (a numpy array)"))));
        }
        Some(match (kind, view.itemsize) {
            (Kind::Bool, _) => self.array::<u8, _>(&view, Bools),
            (Kind::Signed, 1) => self.array::<i8, _>(&view, Ints),
            (Kind::Signed, 2) => self.array::<i16, _>(&view, Ints),
            (Kind::Signed, 4) => self.array::<i32, _>(&view, Ints),
            (Kind::Signed, _) => self.array::<i64, _>(&view, Ints),
            (Kind::Unsigned, 1) => self.array::<u8, _>(&view, Ints),
            (Kind::Unsigned, 2) => self.array::<u16, _>(&view, Ints),
            (Kind::Unsigned, 4) => self.array::<u32, _>(&view, Ints),
            (Kind::Unsigned, _) => self.array::<u64, _>(&view, Ints),
            (Kind::Float, 2) => self.array::<u16, _>(&view, Halves),
            (Kind::Float, 4) => self.array::<f32, _>(&view, Floats),
            (Kind::Float, _) => self.array::<f64, _>(&view, Floats),
            (Kind::Datetime(unit), _) => self.array::<i64, _>(&view, Datetimes(unit)),
        })
    }

    /// Writes `obj` if it is a numpy bool, int or float scalar of an exact type
    /// (the usual ones), without the array interface: read from the object
    /// where its layout was confirmed (no Python code runs then), else through
    /// the C API's number protocol. `None` for anything else, and until numpy
    /// has been seen by [`Serializer::numpy`] (which finds its types).
    #[inline]
    pub(super) fn numpy_scalar(&mut self, obj: &Bound<'py, PyAny>) -> Option<Result<(), SerializeError>> {
        let types = NUMPY_TYPES.get(obj.py())?;
        let ty = types.scalars.get(obj.get_type_ptr() as usize)?;
        let value = match ty.layout.as_ref().and_then(|layout| read_direct(ty.kind, layout, obj.as_borrowed())) {
            Some(value) => value,
            None => {
                // numpy's code may run Python code: the containers being
                // walked are read again, and the GC paused again.
                self.epoch += 1;
                let value = read_api(ty.kind, obj);
                self._gc.renew();
                match value {
                    Ok(value) => value,
                    Err(err) => {
                        return Some(Err(SerializeError::caused(format!("reading the numpy scalar raised {err}"), err)))
                    }
                }
            }
        };
        Some(self.scalar_value(value))
    }

    fn scalar_value(&mut self, value: Value) -> Result<(), SerializeError> {
        match value {
            Value::Bool(b) => self.small(if b { b"true" } else { b"false" }),
            Value::Signed(v) => {
                self.reserve(INT_ROOM)?;
                self.pos = signed(&mut self.buf, self.pos, v);
                Ok(())
            }
            Value::Unsigned(v) => {
                self.reserve(INT_ROOM)?;
                self.pos = write_int(&mut self.buf, self.pos, false, v);
                Ok(())
            }
            Value::Float32(v) => {
                self.reserve(FLOAT_ROOM)?;
                let mut text = zmij::Buffer::new();
                self.pos = put_text(&mut self.buf, self.pos, false, float_text(&mut text, v));
                Ok(())
            }
            Value::Float64(v) => self.float(v),
        }
    }

    /// The array's elements as `T`, each written by `put`, in nested lists; a 0-d
    /// array (or a scalar) as its one element.
    fn array<T: Element, P: Put<T>>(&mut self, view: &ArrayView<'_>, put: P) -> Result<(), SerializeError> {
        if view.shape.is_empty() {
            let value = view.line::<T>(&[]).and_then(|mut line| line.next()).ok_or_else(not_readable)?;
            self.reserve(P::ROOM)?;
            self.pos = put.put(&mut self.buf, self.pos, value)?;
            return Ok(());
        }
        let mut outer = vec![0; view.shape.len() - 1];
        self.dimension(view, &mut outer, 0, &put)
    }

    /// The list of dimension `dim` at the index `outer[..dim]`.
    fn dimension<T: Element, P: Put<T>>(
        &mut self,
        view: &ArrayView<'_>,
        outer: &mut [usize],
        dim: usize,
        put: &P,
    ) -> Result<(), SerializeError> {
        self.byte(b'[')?;
        if dim == outer.len() {
            let mut line = view.line::<T>(outer).ok_or_else(not_readable)?;
            // The write position, kept in a local as in the list walk; room is
            // made once per batch of elements.
            let mut pos = self.pos;
            // The first element alone, so that every other one comes after a comma.
            if let Some(value) = line.next() {
                pos = self.room(pos, P::ROOM)?;
                pos = put.put(&mut self.buf, pos, value).map_err(|err| err.at(Step::Index(0)))?;
            }
            let mut index = 1;
            while line.len() > 0 {
                let batch = line.split_front(BATCH);
                pos = self.room(pos, batch.len() * (P::ROOM + 1))?;
                // The buffer as a local slice: its address and length stay in
                // registers rather than being read from `self.buf` after each store.
                let count = batch.len();
                pos = put.batch(&mut self.buf[..], pos, batch, index)?;
                index += count;
            }
            self.pos = pos;
        } else {
            for index in 0..view.shape[dim] {
                if index > 0 {
                    self.byte(b',')?;
                }
                outer[dim] = index;
                self.dimension(view, outer, dim + 1, put).map_err(|err| err.at(Step::Index(index)))?;
            }
        }
        self.byte(b']')
    }
}

/// Elements written per room check (`BATCH * (ROOM + 1)` stays far below the
/// staging capacity).
const BATCH: usize = 64;

/// How elements of type `T` are written: at `pos`, with `ROOM` bytes of room,
/// returning the new position.
trait Put<T: Element> {
    const ROOM: usize;
    fn put(&self, buf: &mut Out, pos: usize, value: T) -> Result<usize, SerializeError>;

    /// A comma and then `value` (`ROOM + 1` bytes of room).
    #[inline(always)]
    fn after_comma(&self, buf: &mut Out, pos: usize, value: T) -> Result<usize, SerializeError> {
        buf.set(pos, b',');
        self.put(buf, pos + 1, value)
    }

    /// Each element of `line` after a comma (`ROOM + 1` bytes of room each);
    /// the first is at index `first` of its line (for error paths).
    #[inline(always)]
    fn batch(&self, buf: &mut Out, mut pos: usize, line: Line<'_, T>, first: usize) -> Result<usize, SerializeError> {
        for (i, value) in line.enumerate() {
            pos = self.after_comma(buf, pos, value).map_err(|err| err.at(Step::Index(first + i)))?;
        }
        Ok(pos)
    }
}

struct Bools;
struct Ints;
/// float16, stored as its bits.
struct Halves;
struct Floats;
struct Datetimes(Unit);

impl Put<u8> for Bools {
    const ROOM: usize = 8;
    #[inline(always)]
    fn put(&self, buf: &mut Out, pos: usize, value: u8) -> Result<usize, SerializeError> {
        let (text, len) = if value != 0 { (b"true    ", 4) } else { (b"false   ", 5) };
        Ok(put_word(buf, pos, text, len))
    }

    /// The comma and the word as one 8-byte store, picked from a table by the
    /// byte's truth: no branch and no separate comma store per element.
    #[inline(always)]
    fn after_comma(&self, buf: &mut Out, pos: usize, value: u8) -> Result<usize, SerializeError> {
        const WORDS: [(&[u8; 8], usize); 2] = [(b",false  ", 6), (b",true   ", 5)];
        let (word, len) = WORDS[usize::from(value != 0)];
        Ok(put_word(buf, pos, word, len))
    }

    /// Groups of `GROUP` elements, each group's words written into one
    /// fixed-size window: the words are 5 or 6 bytes apart, so every store is
    /// known to fall inside it, and a group costs one bounds check.
    #[inline(always)]
    fn batch(&self, buf: &mut Out, mut pos: usize, mut line: Line<'_, u8>, _: usize) -> Result<usize, SerializeError> {
        const GROUP: usize = 8;
        const WORDS: [u64; 2] = [u64::from_le_bytes(*b",false  "), u64::from_le_bytes(*b",true   ")];
        while let Some(group) = line.next_array::<GROUP>() {
            // `,false` is the longest word (6 bytes), stored as 8.
            let window = &mut buf[pos..pos + 6 * GROUP + 2];
            let mut at = 0;
            for value in group {
                let truth = usize::from(value != 0);
                window[at..at + 8].put(&WORDS[truth].to_le_bytes());
                at += 6 - truth;
            }
            pos += at;
        }
        for value in line {
            pos = self.after_comma(buf, pos, value)?;
        }
        Ok(pos)
    }
}

macro_rules! put_signed {
    ($($t:ty),*) => {$(
        impl Put<$t> for Ints {
            const ROOM: usize = INT_ROOM;
            #[inline(always)]
            fn put(&self, buf: &mut Out, pos: usize, value: $t) -> Result<usize, SerializeError> {
                Ok(signed(buf, pos, value.into()))
            }

            #[inline(always)]
            fn after_comma(&self, buf: &mut Out, pos: usize, value: $t) -> Result<usize, SerializeError> {
                let value = i64::from(value);
                Ok(int_after_comma(buf, pos, value < 0, value.unsigned_abs()))
            }
        }
    )*};
}
put_signed!(i8, i16, i32, i64);

macro_rules! put_unsigned {
    ($($t:ty),*) => {$(
        impl Put<$t> for Ints {
            const ROOM: usize = INT_ROOM;
            #[inline(always)]
            fn put(&self, buf: &mut Out, pos: usize, value: $t) -> Result<usize, SerializeError> {
                Ok(write_int(buf, pos, false, value.into()))
            }

            #[inline(always)]
            fn after_comma(&self, buf: &mut Out, pos: usize, value: $t) -> Result<usize, SerializeError> {
                Ok(int_after_comma(buf, pos, false, value.into()))
            }
        }
    )*};
}
put_unsigned!(u8, u16, u32, u64);

/// A comma and an int at `pos` (`INT_ROOM + 1` bytes of room), written into
/// one fixed-size window of the buffer so that the int's stores need no bounds
/// checks of their own; returns the new position.
#[inline(always)]
fn int_after_comma(buf: &mut Out, pos: usize, negative: bool, magnitude: u64) -> usize {
    let window = &mut buf[pos..pos + 1 + INT_ROOM];
    window.set(0, b',');
    pos + write_int(window, 1, negative, magnitude)
}

impl Put<u16> for Halves {
    const ROOM: usize = FLOAT_ROOM;
    #[inline(always)]
    fn put(&self, buf: &mut Out, pos: usize, value: u16) -> Result<usize, SerializeError> {
        let mut text = zmij::Buffer::new();
        Ok(put_text(buf, pos, false, float_text(&mut text, f16_to_f32(value))))
    }
}

/// float32 and float64 elements.
trait FloatElement: Element + zmij::Float {
    fn finite(self) -> bool;
}

impl FloatElement for f32 {
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
}

impl FloatElement for f64 {
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
}

impl<F: FloatElement> Put<F> for Floats {
    const ROOM: usize = FLOAT_ROOM;
    #[inline(always)]
    fn put(&self, buf: &mut Out, pos: usize, value: F) -> Result<usize, SerializeError> {
        let mut text = zmij::Buffer::new();
        Ok(put_text(buf, pos, false, float_text(&mut text, value)))
    }

    /// Each text is copied into the output only after four more are made (eight
    /// floats a step: four made, the last step's other four copied, four more
    /// made, the first four copied). zmij writes its text with stores of mixed
    /// sizes (for a float in [0, 1), its digits moved right behind `0.`), and
    /// words read back across them at once wait for those stores to complete (a
    /// failed store forward). Copied one text late, as a list's floats are, a
    /// float64 array of floats in [0, 1) took 1.7 times as long per float as the
    /// same floats in a list, for the same instructions.
    #[inline(always)]
    fn batch(&self, buf: &mut Out, mut pos: usize, mut line: Line<'_, F>, _: usize) -> Result<usize, SerializeError> {
        let mut a: [zmij::Buffer; 4] = std::array::from_fn(|_| zmij::Buffer::new());
        let mut b: [zmij::Buffer; 4] = std::array::from_fn(|_| zmij::Buffer::new());
        // The last step's second four texts (in `b`), not yet copied.
        let mut pending: Option<[&[u8]; 4]> = None;
        while let Some([v0, v1, v2, v3, v4, v5, v6, v7]) = line.next_array::<8>() {
            let [a0, a1, a2, a3] = &mut a;
            let t = [float_text(a0, v0), float_text(a1, v1), float_text(a2, v2), float_text(a3, v3)];
            if let Some(p) = pending.take() {
                pos = put_texts(buf, pos, &p);
            }
            let [b0, b1, b2, b3] = &mut b;
            pending = Some([float_text(b0, v4), float_text(b1, v5), float_text(b2, v6), float_text(b3, v7)]);
            pos = put_texts(buf, pos, &t);
        }
        if let Some(p) = pending {
            pos = put_texts(buf, pos, &p);
        }
        // The last few (fewer than eight): all made, then all copied.
        let left = line.len();
        let mut texts: [&[u8]; 8] = [&[]; 8];
        for ((text, buffer), value) in texts.iter_mut().zip(a.iter_mut().chain(b.iter_mut())).zip(line) {
            *text = float_text(buffer, value);
        }
        Ok(put_texts(buf, pos, &texts[..left]))
    }
}

/// Longest float text: `-2.2250738585072014e-308`.
const FLOAT_TEXT_MAX: usize = 24;
const _: () = assert!(FLOAT_TEXT_MAX < FLOAT_ROOM);

/// A float's shortest text (zmij's, as orjson writes it), or `null` if it is
/// not finite.
#[inline(always)]
fn float_text<F: FloatElement>(buffer: &mut zmij::Buffer, value: F) -> &[u8] {
    if value.finite() {
        buffer.format_finite(value).as_bytes()
    } else {
        b"null"
    }
}

/// `texts` in turn at `pos`, each after a comma (see [`put_text`]); returns
/// the position after the last.
#[inline(always)]
fn put_texts(buf: &mut Out, mut pos: usize, texts: &[&[u8]]) -> usize {
    for text in texts {
        pos = put_text(buf, pos, true, text);
    }
    pos
}

/// A comma if `comma`, then `text` (at most `FLOAT_TEXT_MAX` bytes), at `pos`
/// (`FLOAT_TEXT_MAX + 1` bytes of room); returns the new position. The text
/// goes in as whole 8-byte words into one fixed-size window of the buffer, so
/// that an element costs one bounds check rather than one per store.
#[inline(always)]
fn put_text(buf: &mut Out, pos: usize, comma: bool, text: &[u8]) -> usize {
    let window = &mut buf[pos..pos + 1 + FLOAT_TEXT_MAX];
    // Written either way; without a comma the text goes over it.
    window.set(0, b',');
    let start = usize::from(comma);
    let out = &mut window[start..start + FLOAT_TEXT_MAX];
    // zmij's text is never longer; the bound lets the compiler drop the checks below.
    let len = text.len().min(FLOAT_TEXT_MAX);
    if len < 8 {
        out[..8].put(&short_word(text).to_le_bytes());
    } else {
        // The first 8 bytes, past 16 the middle 8, and the last 8 (overlapping).
        out[..8].put(&text[..8]);
        if len > 16 {
            out[8..16].put(&text[8..16]);
        }
        out[len - 8..len].put(&text[len - 8..len]);
    }
    pos + start + len
}

impl Put<i64> for Datetimes {
    /// A datetime with microseconds in quotes is 28 bytes.
    const ROOM: usize = 40;
    #[inline(always)]
    fn put(&self, buf: &mut Out, pos: usize, value: i64) -> Result<usize, SerializeError> {
        put_datetime64(buf, pos, value, self.0)
    }
}

#[cold]
fn not_readable() -> SerializeError {
    SerializeError::value("the numpy array's shape and element size do not match its data".to_owned())
}

/// The array's dtype as numpy's array interface writes it (`<i4`), for messages.
fn dtype_text(obj: &Bound<'_, PyAny>) -> String {
    let py = obj.py();
    obj.getattr(intern!(py, "dtype"))
        .and_then(|d| d.getattr(intern!(py, "str")))
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| type_name(obj))
}

/// The unit of a datetime64 array or scalar, from its dtype (`<M8[ns]`).
fn datetime_unit(obj: &Bound<'_, PyAny>) -> Result<Unit, String> {
    let py = obj.py();
    let text = obj
        .getattr(intern!(py, "dtype"))
        .and_then(|d| d.getattr(intern!(py, "str")))
        .and_then(|s| s.extract::<String>())
        .map_err(|err| format!("reading the numpy.datetime64 unit raised {err}"))?;
    Unit::from_dtype(&text).ok_or_else(|| format!("unsupported numpy.datetime64 unit: {text}"))
}

#[inline(always)]
fn signed(buf: &mut Out, pos: usize, value: i64) -> usize {
    write_int(buf, pos, value < 0, value.unsigned_abs())
}

/// An IEEE half-precision float widened to f32 (exactly: every half is a float).
fn f16_to_f32(half: u16) -> f32 {
    let negative = half & 0x8000 != 0;
    let exponent = u32::from((half >> 10) & 0x1f);
    let mantissa = u32::from(half & 0x3ff);
    let magnitude = match exponent {
        // Zero and subnormals: mantissa * 2^-24.
        0 => mantissa as f32 / 16_777_216.0,
        // Infinities and NaN.
        0x1f => f32::from_bits(0x7f80_0000 | (mantissa << 13)),
        _ => f32::from_bits(((exponent + 112) << 23) | (mantissa << 13)),
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// A datetime64 in quotes (40 bytes of room), or why it has no text.
fn put_datetime64(buf: &mut Out, pos: usize, value: i64, unit: Unit) -> Result<usize, SerializeError> {
    let mut text = ShortText::new();
    datetime::datetime64(&mut text, value, unit).ok_or_else(|| unrepresentable(value, unit))?;
    let text = text.as_bytes();
    buf.set(pos, b'"');
    buf[pos + 1..pos + 1 + text.len()].put(text);
    buf.set(pos + 1 + text.len(), b'"');
    Ok(pos + text.len() + 2)
}

#[cold]
fn unrepresentable(value: i64, unit: Unit) -> SerializeError {
    let what = if value == i64::MIN { "NaT".to_owned() } else { format!("{value} {unit:?}") };
    SerializeError::value(format!("unrepresentable numpy.datetime64: {what} (years 0 to 9999 only)"))
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn halves_widen_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7c00).is_infinite() && f16_to_f32(0x7e00).is_nan());
    }
}
