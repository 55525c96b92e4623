//! Pass two: payload lines straight to the row bytes of their tables, through the planned
//! tables' compiled plans.

use super::*;

/// What came of a chunk: rows for tables, and lines for the `Record` path, in input order
/// (each table's rows in order; a line handed back comes after every row before it).
#[derive(Debug)]
pub enum Piece {
    /// Rows of one table.
    Rows {
        /// The table.
        table: Arc<str>,
        /// Its rows; `positions` are 0-based line numbers.
        batch: Batch,
    },
    /// A line for the `Record` path.
    Line {
        /// 1-based line number.
        number: u64,
        /// Its text, trimmed (lossy when it is not UTF-8).
        text: String,
        /// Why it cannot be read at all (not UTF-8), when so.
        unreadable: Option<&'static str>,
    },
}

/// A table the transcoder writes: its plan and where each column goes.
#[derive(Debug)]
pub(super) struct TableOut {
    pub(super) descriptor: RowDescriptor,
    /// Field index of each fixed column; `None` when the table lacks it or holds another type.
    pub(super) fixed: [Option<u32>; FIXED.len()],
    /// Field index by column id: `UNSEEN` until looked up, `ABSENT` when the table lacks it.
    pub(super) by_column: Vec<u32>,
    /// Byte range in the scratch buffer of each field written in the current row.
    pub(super) spans: Vec<(u32, u32)>,
    pub(super) stamp: Vec<u32>,
    pub(super) required: Vec<u32>,
    pub(super) batches: Option<Batches>,
    /// Whether its first columns are `tracks`' columns, in the same places (an event table
    /// planned with `tracks`): its rows then start with the bytes of the track's `tracks` row.
    pub(super) extends_tracks: Option<bool>,
}

impl TableOut {
    fn new(descriptor: RowDescriptor) -> Self {
        let root = descriptor.root();
        let mut fixed = [None; FIXED.len()];
        for (i, (name, ty)) in FIXED.iter().enumerate() {
            fixed[i] = root
                .lookup(name)
                .filter(|&f| {
                    let f = &root.fields[f];
                    f.field_type == *ty && f.mode != Mode::Repeated && f.kind != WireKind::Message
                })
                .map(|f| f as u32);
        }
        let n = root.fields.len();
        let required = (0..n as u32).filter(|&i| root.fields[i as usize].mode == Mode::Required).collect();
        TableOut {
            descriptor,
            fixed,
            by_column: Vec::new(),
            spans: vec![(0, 0); n],
            stamp: vec![0; n],
            required,
            batches: None,
            extends_tracks: None,
        }
    }
}

/// Segment payloads into rows of the planned tables. Keeps its buffers between chunks.
#[derive(Debug)]
pub struct SegmentTranscoder {
    pub(super) reader: Reader,
    pub(super) plans: HashMap<String, RowDescriptor>,
    pub(super) out: Vec<Option<TableOut>>,
    pub(super) bufs: Buffers,
    pub(super) scratch: Vec<u8>,
    pub(super) line_rows: Vec<u8>,
    pub(super) staged: Vec<(u32, u32, u32)>,
    pub(super) rows: Vec<RowOf>,
    pub(super) fixed: Vec<(usize, Fixed)>,
    pub(super) generation: u32,
    pub(super) cut: Cut,
}

impl SegmentTranscoder {
    /// A transcoder for tables with these plans (by table name); a row for any other table
    /// takes the `Record` path.
    pub fn new(plans: HashMap<String, RowDescriptor>, options: SegmentOptions) -> Self {
        SegmentTranscoder {
            reader: Reader::new(options),
            plans,
            out: Vec::new(),
            bufs: Buffers::scratch(),
            scratch: Vec::new(),
            line_rows: Vec::new(),
            staged: Vec::new(),
            rows: Vec::new(),
            fixed: Vec::new(),
            generation: 0,
            cut: Cut { max_rows: 500, max_bytes: 9 << 20 },
        }
    }

    /// The options rows are made by.
    pub fn options(&self) -> &SegmentOptions {
        &self.reader.options
    }

    /// Whether the plans are these.
    pub fn plans_are(&self, plans: &HashMap<String, RowDescriptor>) -> bool {
        self.plans.len() == plans.len()
            && plans.iter().all(|(k, d)| self.plans.get(k).is_some_and(|mine| mine.same_as(d)))
    }

    /// Transcodes a chunk of NDJSON (whole lines) whose first line is line `first_line`
    /// (1-based); `now` is the rows' `uuid_ts` and `loaded_at`, and `received_at` when a payload
    /// has none.
    pub fn chunk(&mut self, chunk: &[u8], first_line: u64, now: Timestamp, cut: Cut) -> Vec<Piece> {
        self.reader.now = now;
        self.cut = cut;
        if self.reader.forget_columns() {
            self.out.iter_mut().flatten().for_each(|o| o.by_column.clear());
        }
        let mut pieces = Vec::new();
        for (n, range) in lines(chunk).enumerate() {
            let number = first_line + n as u64;
            let raw = &chunk[range];
            let Ok(text) = std::str::from_utf8(raw) else {
                self.flush(&mut pieces);
                let text = String::from_utf8_lossy(raw).trim().to_owned();
                pieces.push(Piece::Line { number, text, unreadable: Some(NOT_UTF8) });
                continue;
            };
            let text = text.trim().trim_start_matches('\u{feff}');
            if text.is_empty() {
                continue;
            }
            if self.line(text).is_err() {
                self.flush(&mut pieces);
                pieces.push(Piece::Line { number, text: text.to_owned(), unreadable: None });
                continue;
            }
            for &(t, s, e) in &self.staged {
                if let Some(out) = self.out.get_mut(t as usize).and_then(Option::as_mut) {
                    let cut = self.cut;
                    let batches = out.batches.get_or_insert_with(|| Batches::new(&out.descriptor, cut, 64 << 10));
                    batches.row(&self.line_rows[s as usize..e as usize], number - 1);
                }
            }
        }
        self.flush(&mut pieces);
        pieces
    }

    /// Every table's rows so far, as pieces.
    fn flush(&mut self, pieces: &mut Vec<Piece>) {
        for (t, out) in self.out.iter_mut().enumerate() {
            let Some(out) = out else { continue };
            if let Some(b) = out.batches.take() {
                let table = self.reader.tables[t].clone();
                pieces.extend(b.finish().into_iter().map(|batch| Piece::Rows { table: table.clone(), batch }));
            }
        }
    }

    /// Stages the rows of one line; `Err` hands the line to the other path.
    fn line(&mut self, line: &str) -> Fast<()> {
        self.staged.clear();
        self.line_rows.clear();
        self.reader.line(line)?;
        for m in 0..self.reader.msgs.len() {
            let msg = self.reader.msgs[m];
            let mut rows = std::mem::take(&mut self.rows);
            self.reader.rows_of(&msg, &mut rows);
            let result = rows.iter().try_for_each(|row| self.row(line, &msg, row));
            self.rows = rows;
            result?;
        }
        Ok(())
    }

    fn table_out(&mut self, table: u32) -> Fast<()> {
        let t = table as usize;
        if self.out.len() <= t {
            self.out.resize_with(t + 1, || None);
        }
        if self.out[t].is_none() {
            let name = &self.reader.tables[t];
            let d = self.plans.get(&**name).ok_or(Slow)?;
            self.out[t] = Some(TableOut::new(d.clone()));
        }
        Ok(())
    }

    fn row(&mut self, line: &str, msg: &Msg, row: &RowOf) -> Fast<()> {
        let table = match *row {
            RowOf::Common { table, .. } | RowOf::User { table } => table,
        };
        self.table_out(table)?;
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Stamps of old rows could pass for this one's: all cleared once in 2^32 rows.
            self.out.iter_mut().flatten().for_each(|o| o.stamp.iter_mut().for_each(|s| *s = 0));
            self.generation = 1;
        }
        let gen = self.generation;
        // A track's event row after its `tracks` row: the same columns first, then properties.
        if let (RowOf::Common { custom: true, .. }, Call::Track, Some(&(0, start, end))) =
            (row, msg.call, self.staged.last())
        {
            if table != 0 && self.extends_tracks(table) {
                return self.write_event_row(line, msg, table, (start, end), gen);
            }
        }
        let mut fixed = std::mem::take(&mut self.fixed);
        Reader::fixed(msg, row, self.reader.now, &mut fixed);
        let result = self.write_row(line, msg, row, table, &fixed, gen);
        self.fixed = fixed;
        result
    }

    fn extends_tracks(&mut self, table: u32) -> bool {
        let (Some(Some(tracks)), Some(Some(event))) = (self.out.first(), self.out.get(table as usize)) else {
            return false;
        };
        if let Some(known) = event.extends_tracks {
            return known;
        }
        let (t, e) = (tracks.descriptor.root(), event.descriptor.root());
        let same = event.required.is_empty()
            && e.fields.len() >= t.fields.len()
            && t.fields
                .iter()
                .zip(&e.fields)
                .all(|(a, b)| a.name == b.name && a.field_type == b.field_type && a.mode == b.mode && a.kind == b.kind);
        if let Some(Some(event)) = self.out.get_mut(table as usize) {
            event.extends_tracks = Some(same);
        }
        same
    }

    /// An event row whose table extends `tracks`: the `tracks` row's bytes (at `tracks` in
    /// `line_rows`), then the properties in schema order.
    fn write_event_row(&mut self, line: &str, msg: &Msg, table: u32, tracks: (u32, u32), gen: u32) -> Fast<()> {
        let shared = self.out.first().and_then(Option::as_ref).map_or(0, |t| t.descriptor.root().fields.len());
        let Self { reader, out, bufs, scratch, line_rows, staged, .. } = self;
        let out = out.get_mut(table as usize).and_then(Option::as_mut).ok_or(Slow)?;
        scratch.clear();
        let kind = 1 << kind_of(&reader.tables[table as usize]);
        let custom = &reader.leaves[msg.custom.0 as usize..msg.custom.1 as usize];
        for leaf in custom.iter().filter(|l| reader.columns[l.column as usize].reserved & kind == 0) {
            // A property in a column `tracks` has too would break the order: the long way.
            if write_leaf(reader, out, bufs, scratch, line, *leaf, gen)? < shared {
                return Err(Slow);
            }
        }
        let start = line_rows.len() as u32;
        line_rows.extend_from_within(tracks.0 as usize..tracks.1 as usize);
        for idx in shared..out.descriptor.root().fields.len() {
            if out.stamp[idx] == gen {
                let (s, e) = out.spans[idx];
                line_rows.extend_from_slice(&scratch[s as usize..e as usize]);
            }
        }
        staged.push((table, start, line_rows.len() as u32));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn write_row(
        &mut self,
        line: &str,
        msg: &Msg,
        row: &RowOf,
        table: u32,
        fixed: &[(usize, Fixed)],
        gen: u32,
    ) -> Fast<()> {
        let Self { reader, out, bufs, scratch, line_rows, staged, .. } = self;
        let out = out.get_mut(table as usize).and_then(Option::as_mut).ok_or(Slow)?;
        scratch.clear();
        let root = out.descriptor.root();
        for &(f, value) in fixed {
            let idx = out.fixed[f].ok_or(Slow)? as usize;
            let field = &root.fields[idx];
            if out.stamp[idx] == gen {
                return Err(Slow);
            }
            let start = scratch.len() as u32;
            match value {
                Fixed::Text(None) | Fixed::Time(None) => continue,
                Fixed::Text(Some(t)) => {
                    field.tag.put(scratch);
                    put_coerced_body(&Coerced::Str(reader.text(line, t)), &[], scratch);
                }
                Fixed::Slug => {
                    let slug = reader.tables.get(msg.event_table as usize).ok_or(Slow)?;
                    field.tag.put(scratch);
                    put_coerced_body(&Coerced::Str(slug), &[], scratch);
                }
                Fixed::Time(Some(t)) => {
                    field.tag.put(scratch);
                    put_coerced_body(&Coerced::Timestamp(t), &[], scratch);
                }
            }
            out.stamp[idx] = gen;
            out.spans[idx] = (start, scratch.len() as u32);
        }
        for leaf in reader.row_leaves(msg, row) {
            write_leaf(reader, out, bufs, scratch, line, leaf, gen)?;
        }
        if out.required.iter().any(|&i| out.stamp[i as usize] != gen) {
            return Err(Slow);
        }
        // The row in schema order, as the `Record` encoder writes it.
        let start = line_rows.len() as u32;
        for idx in 0..out.descriptor.root().fields.len() {
            if out.stamp[idx] == gen {
                let (s, e) = out.spans[idx];
                line_rows.extend_from_slice(&scratch[s as usize..e as usize]);
            }
        }
        staged.push((table, start, line_rows.len() as u32));
        Ok(())
    }
}

/// Writes one leaf into its column's place in `scratch`; returns the column's index. `Slow` when
/// the table lacks the column, the row has it already, or the value does not fit it.
pub(super) fn write_leaf(
    reader: &Reader,
    out: &mut TableOut,
    bufs: &mut Buffers,
    scratch: &mut Vec<u8>,
    line: &str,
    leaf: Leaf,
    gen: u32,
) -> Fast<usize> {
    let root = out.descriptor.root();
    let c = leaf.column as usize;
    if out.by_column.len() <= c {
        out.by_column.resize(c + 1, UNSEEN);
    }
    if out.by_column[c] == UNSEEN {
        let name = &reader.columns[c].name;
        out.by_column[c] = match root.lookup(name) {
            Some(i) if flat(&root.fields[i]) => i as u32,
            _ => ABSENT,
        };
    }
    let idx = out.by_column[c];
    if idx == ABSENT {
        return Err(Slow);
    }
    let idx = idx as usize;
    if out.stamp[idx] == gen {
        return Err(Slow);
    }
    let field = &root.fields[idx];
    let start = scratch.len();
    let scalar = match leaf.kind {
        LeafKind::Str(body, false) => Some(Scalar::Str(&line[body.start as usize..body.end as usize])),
        LeafKind::Int(i) => Some(Scalar::Int(i)),
        LeafKind::Float(f) => Some(Scalar::Float(f)),
        LeafKind::Bool(b) => Some(Scalar::Bool(b)),
        LeafKind::Str(_, true) | LeafKind::Decimal | LeafKind::Array => None,
    };
    match (leaf.kind, scalar) {
        // Values that already have the column's type, as read.
        (LeafKind::Str(..), Some(Scalar::Str(text))) if field.field_type == FieldType::String => {
            field.tag.put(scratch);
            put_varint(scratch, text.len() as u64);
            scratch.extend_from_slice(text.as_bytes());
        }
        (LeafKind::Int(i), _) if field.field_type == FieldType::Int64 => {
            field.tag.put(scratch);
            put_varint(scratch, i as u64);
        }
        // Others by the shared rules (a JSON column keeps the value's text: below).
        (_, Some(s)) if field.field_type != FieldType::Json => {
            let c = coerce_scalar(s, field.field_type, &mut bufs.bytes).map_err(slow)?;
            field.tag.put(scratch);
            put_coerced_body(&c, &bufs.bytes, scratch);
        }
        (LeafKind::Array, _) => {
            let text = Reader::array_text(line, leaf.value)?;
            let c = coerce_scalar(Scalar::Str(&text), field.field_type, &mut bufs.bytes).map_err(slow)?;
            field.tag.put(scratch);
            put_coerced_body(&c, &bufs.bytes, scratch);
        }
        _ => {
            let mut p = Parser { s: line, b: line.as_bytes(), i: leaf.value.start as usize };
            let path = Path::column(&field.name);
            match one(bufs, UnknownFields::Reject, &mut p, field, &path, scratch).map_err(slow)? {
                Outcome::Written => {}
                Outcome::Null | Outcome::Failed(_) => return Err(Slow),
            }
        }
    }
    out.stamp[idx] = gen;
    out.spans[idx] = (start as u32, scratch.len() as u32);
    Ok(idx)
}

/// A column the fast path writes: one scalar, not a RECORD nor REPEATED.
pub(super) fn flat(f: &FieldPlan) -> bool {
    f.kind != WireKind::Message && f.mode != Mode::Repeated
}
