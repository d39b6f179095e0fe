//! Floats in lists, written by runs that format each float a few floats
//! before they copy its text (see [`Serializer::float_run`]): a list whose
//! items are floats (`float_list`), and a list's short lists of floats in a
//! row, such as coordinate pairs (`float_rows`), as one run across all of them.
//! Not in the stable-ABI build, which reads no item array directly.

use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyList};

use super::borrowed::{self, FloatRow, ListItems};
use super::cache::CACHED_COPY;
use super::error::{SerializeError, Step};
use super::out::Out;
use super::walk::{copy_short, item_window, Serializer};
use super::Sink;

/// Rows longer than this are left to `float_list` (whose run keeps its own
/// lag within the row); a row this short is written faster in a run that
/// goes on across rows.
const ROW_MAX: usize = 16;

/// Where a float run's floats come from, and the bytes before each.
trait Floats {
    /// The bytes before a float.
    type Lead: Copy;
    /// The next float of the run and the bytes before it; none at its end (an
    /// item that ends the run is taken back, for the walk after it).
    fn next(&mut self) -> Option<(Self::Lead, f64)>;
    /// Writes `lead` at the start of `window`; returns its length (at most 3).
    fn put_lead(window: &mut Out, lead: Self::Lead) -> usize;
    /// The index (in the list walked) an error names for the float `back`
    /// floats before the last one taken.
    fn index(&self, back: usize) -> usize;
}

/// A list's floats, each after a comma (the first's lead is the caller's).
struct ListFloats<'i, 'a, 'py> {
    items: &'i mut ListItems<'a, 'py>,
    float: *mut pyo3::ffi::PyTypeObject,
}

impl Floats for ListFloats<'_, '_, '_> {
    type Lead = u8;

    #[inline(always)]
    fn next(&mut self) -> Option<(u8, f64)> {
        let item = self.items.next()?;
        if item.get_type_ptr() == self.float {
            return Some((b',', float_value(item)));
        }
        self.items.unread();
        None
    }

    #[inline(always)]
    fn put_lead(window: &mut Out, lead: u8) -> usize {
        window.set(0, lead);
        1
    }

    #[inline(always)]
    fn index(&self, back: usize) -> usize {
        self.items.taken() - back
    }
}

/// The floats of a list's rows (see `FloatRow`) in turn: a comma before
/// each, but `],[` before a row's first.
struct RowFloats<'i, 'a, 'py> {
    rows: &'i mut ListItems<'a, 'py>,
    /// The current row's floats not yet taken.
    row: FloatRow<'a>,
    float: *mut pyo3::ffi::PyTypeObject,
    list: *mut pyo3::ffi::PyTypeObject,
}

/// A row's lead bytes, up to three, in the low bytes of a word whose top byte
/// is their count: one store writes them (the text after them overwrites
/// the rest).
#[derive(Clone, Copy)]
struct RowLead(u32);

impl RowLead {
    const COMMA: Self = Self::new(b",");
    const NEXT_ROW: Self = Self::new(b"],[");

    const fn new(bytes: &[u8]) -> Self {
        let mut word = (bytes.len() as u32) << 24;
        let mut i = 0;
        while i < bytes.len() {
            word |= (bytes[i] as u32) << (8 * i);
            i += 1;
        }
        Self(word)
    }
}

impl Floats for RowFloats<'_, '_, '_> {
    type Lead = RowLead;

    #[inline(always)]
    fn next(&mut self) -> Option<(RowLead, f64)> {
        if let Some(value) = self.row.next() {
            return Some((RowLead::COMMA, value));
        }
        let item = self.rows.next()?;
        if item.get_type_ptr() == self.list {
            // SAFETY: the object's type is exactly `list`. No Python code runs
            // while floats are written (see `float_rows`).
            let row = unsafe { FloatRow::new(item.cast_unchecked::<PyList>(), self.float, ROW_MAX) };
            if let Some(mut row) = row {
                // A row has at least one item.
                let value = row.next()?;
                self.row = row;
                return Some((RowLead::NEXT_ROW, value));
            }
        }
        self.rows.unread();
        None
    }

    #[inline(always)]
    fn put_lead(window: &mut Out, lead: RowLead) -> usize {
        window[..4].put(&lead.0.to_le_bytes());
        (lead.0 >> 24) as usize
    }

    /// The row being read (rather than the float's own row, which may be one
    /// before it): an error here is the sink's, and names where it stopped.
    #[inline(always)]
    fn index(&self, _back: usize) -> usize {
        self.rows.taken() - 1
    }
}

impl<'py, S: Sink> Serializer<'_, '_, 'py, S> {
    /// A list whose first item is a float: its leading run of floats (all its
    /// items, usually) by `float_run`, and the rest, if any, by `list_rest`; at
    /// `pos`, and returns the position after it. Chosen once per list, by
    /// `scalar_items`'s first item (`depth` already entered), so that its loop has
    /// no float-run step.
    #[inline(never)]
    pub(super) fn float_list(
        &mut self,
        list: Borrowed<'_, 'py, PyList>,
        depth: u32,
        pos: usize,
    ) -> Result<usize, SerializeError> {
        // SAFETY: as in `scalar_items` (writing floats runs no Python code).
        let mut items = unsafe { ListItems::new_at(list, borrowed::Layouts::NONE, 0) };
        let Some(first) = items.next() else {
            // Not reached (`scalar_items` saw a first item); an empty list all the same.
            return self.close_at(pos, b'[', b'[', b']');
        };
        let mut floats = ListFloats { items: &mut items, float: self.types.float };
        let pos = self.float_run(&mut floats, b'[', float_value(first), pos)?;
        if items.next().is_none() {
            return self.close_at(pos, b',', b'[', b']');
        }
        // The item that ended the run (taken back by `float_run`) and the rest.
        self.list_rest(list, items.taken() - 1, depth, b',', pos)
    }

    /// The first item of `list` (whose own depth, entered, is `depth`) if it is
    /// a short list of floats (`FloatRow`), and the rows like it that follow,
    /// all in one run, after the list's `[`, at `pos`. Returns the position
    /// after the last row's `]` and the index of the item after the rows;
    /// `None` if the first item is not such a row, with nothing written.
    ///
    /// A list of pairs written pair by pair is a run of two floats each time,
    /// too short for a lag (see `float_run`): 20,000 pairs of short floats
    /// took 1.16 times orjson's time.
    #[inline(never)]
    pub(super) fn float_rows(
        &mut self,
        list: Borrowed<'_, 'py, PyList>,
        depth: u32,
        pos: usize,
    ) -> Option<Result<(usize, usize), SerializeError>> {
        // Too deep: the walk's own step for a list gives the error.
        Self::enter(depth).ok()?;
        // SAFETY: the GC is paused (`self._gc`) and the GIL held, and writing
        // floats runs no Python code, so neither `list` nor its rows change
        // while they are written.
        let mut rows = unsafe { ListItems::new_at(list, borrowed::Layouts::NONE, 0) };
        let item = rows.next().filter(|item| item.get_type_ptr() == self.types.list)?;
        // SAFETY: as above; the item's type is exactly `list`.
        let mut row = unsafe { FloatRow::new(item.cast_unchecked::<PyList>(), self.types.float, ROW_MAX) }?;
        let first = row.next()?;
        let mut floats = RowFloats { rows: &mut rows, row, float: self.types.float, list: self.types.list };
        let written = self.float_run(&mut floats, RowLead::new(b"[["), first, pos).and_then(|pos| {
            let index = floats.index(0);
            self.close_at(pos, b',', b'[', b']').map_err(|err| err.at(Step::Index(index)))
        });
        Some(written.map(|pos| (pos, rows.taken())))
    }

    /// A run of floats from `floats`, from `first` (after `lead`) on, written
    /// from `pos`; returns the new position.
    ///
    /// Each float's text is copied into the staging buffer only after the next
    /// three are made (four buffers in turn, as numpy's floats are four late, see
    /// `numpy.rs`): zmij writes its text with stores of mixed sizes, and words
    /// read back across them at once wait for those stores to complete (a
    /// failed store forward). Two late, the float shapes took 1-4 % longer.
    #[inline(always)]
    fn float_run<F: Floats>(
        &mut self,
        floats: &mut F,
        lead: F::Lead,
        first: f64,
        pos: usize,
    ) -> Result<usize, SerializeError> {
        let (mut a, mut b, mut c, mut d) =
            (zmij::Buffer::new(), zmij::Buffer::new(), zmij::Buffer::new(), zmij::Buffer::new());
        let (mut la, mut ta) = (lead, float_bytes(&mut a, first));
        let Some((mut lb, value)) = floats.next() else {
            return self.put_text(floats, pos, la, ta, 1);
        };
        let mut tb = float_bytes(&mut b, value);
        let Some((mut lc, value)) = floats.next() else {
            let pos = self.put_text(floats, pos, la, ta, 2)?;
            return self.put_text(floats, pos, lb, tb, 1);
        };
        let mut tc = float_bytes(&mut c, value);
        let mut pos = pos;
        loop {
            let Some((ld, value)) = floats.next() else {
                pos = self.put_text(floats, pos, la, ta, 3)?;
                pos = self.put_text(floats, pos, lb, tb, 2)?;
                return self.put_text(floats, pos, lc, tc, 1);
            };
            let td = float_bytes(&mut d, value);
            pos = self.put_text(floats, pos, la, ta, 4)?;
            let Some((l, value)) = floats.next() else {
                pos = self.put_text(floats, pos, lb, tb, 3)?;
                pos = self.put_text(floats, pos, lc, tc, 2)?;
                return self.put_text(floats, pos, ld, td, 1);
            };
            (la, ta) = (l, float_bytes(&mut a, value));
            pos = self.put_text(floats, pos, lb, tb, 4)?;
            let Some((l, value)) = floats.next() else {
                pos = self.put_text(floats, pos, lc, tc, 3)?;
                pos = self.put_text(floats, pos, ld, td, 2)?;
                return self.put_text(floats, pos, la, ta, 1);
            };
            (lb, tb) = (l, float_bytes(&mut b, value));
            pos = self.put_text(floats, pos, lc, tc, 4)?;
            let Some((l, value)) = floats.next() else {
                pos = self.put_text(floats, pos, ld, td, 3)?;
                pos = self.put_text(floats, pos, la, ta, 2)?;
                return self.put_text(floats, pos, lb, tb, 1);
            };
            (lc, tc) = (l, float_bytes(&mut c, value));
            pos = self.put_text(floats, pos, ld, td, 4)?;
        }
    }

    /// `lead`, then a float's `text`, at `pos` (the float `back` floats before
    /// the last taken from `floats`, which an error names); makes its own
    /// room; returns the new position.
    #[inline(always)]
    fn put_text<F: Floats>(
        &mut self,
        floats: &F,
        pos: usize,
        lead: F::Lead,
        text: &[u8],
        back: usize,
    ) -> Result<usize, SerializeError> {
        // Room for the window the lead bytes and the text are written through.
        let pos = self.room(pos, CACHED_COPY + 1).map_err(|err| err.at(Step::Index(floats.index(back))))?;
        let window = item_window(&mut self.buf, pos);
        let at = F::put_lead(window, lead);
        // zmij's text is never longer than 24 bytes, and the lead at most 3:
        // the copy stays within the window.
        Ok(pos + copy_short(window, at, text))
    }
}

/// The value of `obj`, an exact `float`.
#[inline(always)]
fn float_value(obj: Borrowed<'_, '_, PyAny>) -> f64 {
    // SAFETY: the caller has compared the object's type with `float`'s: it is a `PyFloat`.
    unsafe { obj.cast_unchecked::<PyFloat>() }.value()
}

/// A float's text (`null` if it is not finite, orjson's choice), made in `buffer`.
#[inline(always)]
fn float_bytes(buffer: &mut zmij::Buffer, value: f64) -> &[u8] {
    if value.is_finite() {
        buffer.format_finite(value).as_bytes()
    } else {
        null_text()
    }
}

/// `null`, a non-finite float's text: out of the float run's way.
#[cold]
#[inline(never)]
fn null_text() -> &'static [u8] {
    b"null"
}
