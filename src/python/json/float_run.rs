//! Floats in lists, written by runs that format each float a few floats
//! before they copy its text (see [`Serializer::float_run`]): here a list
//! whose items are floats (`float_list`), or in the stable-ABI build each run
//! of floats in a list walk (`float_items`), and in `float_rows` a list of
//! short lists of floats.

use pyo3::prelude::*;
use pyo3::types::PyFloat;
#[cfg(not(Py_LIMITED_API))]
use pyo3::types::PyList;

#[cfg(not(Py_LIMITED_API))]
use super::borrowed;
use super::borrowed::ListItems;
use super::cache::CACHED_COPY;
use super::error::{SerializeError, Step};
use super::out::Out;
use super::walk::{copy_short, item_window, Serializer};
use super::Sink;

/// Where a float run's floats come from, and the bytes before each.
pub(super) trait Floats {
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

impl<'py, S: Sink> Serializer<'_, '_, 'py, S> {
    /// A list's items from its float at `start` (after `lead`) on: each run of
    /// floats by `float_run`, the other scalars between runs here, and from the
    /// first item that is not a scalar on, by `list_rest`; at `pos`, and returns
    /// the position after the list. Chosen by `scalar_items` at a float (`depth`
    /// already entered), so that its loop has no float-run step.
    ///
    /// Lists of floats often hold a few whole numbers as ints: a run ends at an
    /// int, and the next starts at the next float that another float follows
    /// (a float alone is written as it comes, which costs less than a run's
    /// set-up). Passing ints through the run instead cost lists of floats alone
    /// 2.6 % more instructions.
    #[cfg(not(Py_LIMITED_API))]
    #[inline(never)]
    pub(super) fn float_list(
        &mut self,
        list: Borrowed<'_, 'py, PyList>,
        start: usize,
        depth: u32,
        lead: u8,
        pos: usize,
    ) -> Result<usize, SerializeError> {
        // SAFETY: as in `scalar_items` (writing scalars runs no Python code).
        let mut items = unsafe { ListItems::new_at(list, borrowed::Layouts::NONE, start) };
        let Some(first) = items.next().filter(|item| item.get_type_ptr() == self.types.float) else {
            // Not reached (`scalar_items` saw a float there); the general walk all the same.
            return self.list_rest(list, start, depth, lead, pos);
        };
        let (mut value, mut lead, mut pos) = (float_value(first), lead, pos);
        'runs: loop {
            let mut floats = ListFloats { items: &mut items, float: self.types.float };
            pos = self.float_run(&mut floats, lead, value, pos)?;
            lead = b',';
            // The item that ended the run (taken back by `float_run`) and the
            // scalars after it, up to a float followed by another.
            while let Some(item) = items.next() {
                match self.list_item::<true>(item, pos, lead) {
                    Some(Ok(end)) => pos = end,
                    Some(Err(err)) => return Err(err.at(Step::Index(items.taken() - 1))),
                    None if item.get_type_ptr() == self.types.float => {
                        if items.peek_type() == self.types.float {
                            (value, pos) = (float_value(item), self.pos);
                            continue 'runs;
                        }
                        // `list_item` has made the room at `self.pos`.
                        match self.put_scalar::<true, false>(item, self.pos, lead) {
                            Some(Ok(end)) => pos = end,
                            Some(Err(err)) => return Err(err.at(Step::Index(items.taken() - 1))),
                            None => return self.list_rest(list, items.taken() - 1, depth, lead, self.pos),
                        }
                    }
                    None => return self.list_rest(list, items.taken() - 1, depth, lead, self.pos),
                }
            }
            return self.close_at(pos, lead, b'[', b']');
        }
    }

    /// A run of floats in a list walk of the stable-ABI build: from the item of
    /// `list` at `start` (a float), after `lead`, at `pos`. Returns the position
    /// after the run and the index of the item that ends it. (The walk there
    /// pays a C-API call per item, and the copy of each float's text right after
    /// zmij made it cost lists of floats another 10-20 %.)
    #[cfg(Py_LIMITED_API)]
    #[inline(never)]
    pub(super) fn float_items(
        &mut self,
        list: Borrowed<'_, 'py, pyo3::types::PyList>,
        start: usize,
        lead: u8,
        pos: usize,
    ) -> Result<(usize, usize), SerializeError> {
        // SAFETY: the stable-ABI items come by `PyList_GetItem`, which checks
        // each index; writing floats runs no Python code.
        let mut items = unsafe { ListItems::new_at(list, super::borrowed::Layouts::NONE, start) };
        let Some(first) = items.next().filter(|item| item.get_type_ptr() == self.types.float) else {
            // Not reached (the walk saw a float there); nothing written.
            return Ok((pos, start));
        };
        let mut floats = ListFloats { items: &mut items, float: self.types.float };
        let pos = self.float_run(&mut floats, lead, float_value(first), pos)?;
        Ok((pos, items.taken()))
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
    pub(super) fn float_run<F: Floats>(
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
