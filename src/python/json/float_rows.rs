//! A list of short lists of floats (coordinate pairs, rows of a table) written
//! as one float run across its rows (see [`Serializer::float_rows`]). Not in
//! the stable-ABI build: a row is read from its item array directly.

use pyo3::prelude::*;
use pyo3::types::PyList;

use super::borrowed::{self, FloatRow, ListItems};
use super::error::{SerializeError, Step};
use super::float_run::Floats;
use super::out::Out;
use super::walk::Serializer;
use super::Sink;

/// Rows longer than this are left to `float_list` (whose run keeps its own
/// lag within the row); a row this short is written faster in a run that
/// goes on across rows.
const ROW_MAX: usize = 16;

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
}
