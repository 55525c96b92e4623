//! Pass one: the column types a chunk of payloads calls for, per table, keeping no row.

use super::*;

/// A type observed in a column, and the row (0-based) where it was first seen.
pub(super) type Seen = (FieldType, usize);

/// The column types one table's rows call for, as observed.
#[derive(Clone, Debug, Default)]
pub struct TableScan {
    /// Rows observed.
    pub rows: usize,
    /// Columns in order of first appearance, each with the distinct types observed in order
    /// of first appearance and the row (0-based, in this table) where each was first seen.
    pub(super) columns: Vec<(Box<str>, Vec<Seen>)>,
    pub(super) index: HashMap<Box<str>, usize>,
    /// Column index by the scanner's column id (`UNSEEN` until used).
    pub(super) by_column: Vec<u32>,
    pub(super) fixed: [u32; FIXED.len()],
}

impl TableScan {
    fn new() -> Self {
        TableScan { fixed: [UNSEEN; FIXED.len()], ..Default::default() }
    }

    fn column_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.columns.len();
        self.columns.push((name.into(), Vec::new()));
        self.index.insert(name.into(), i);
        i
    }

    fn observe(&mut self, column: usize, ty: FieldType, row: usize) {
        let types = &mut self.columns[column].1;
        if !types.iter().any(|(t, _)| *t == ty) {
            types.push((ty, row));
        }
    }

    /// Adds a later part of the input's observations.
    fn merge(&mut self, later: TableScan) {
        let offset = self.rows;
        for (name, types) in later.columns {
            let i = self.column_index(&name);
            for (ty, row) in types {
                self.observe(i, ty, offset + row);
            }
        }
        self.rows += later.rows;
    }

    /// The inference these observations make: the same as observing every row in order (types
    /// fold the same way; a conflict is reported once per type and part of the input).
    pub fn inference(&self) -> SchemaInference {
        let mut inference = SchemaInference::new(InferMode::Segment);
        for (name, types) in &self.columns {
            for (ty, row) in types {
                inference.observe_column(name, *ty, *row);
            }
        }
        inference.add_records(self.rows);
        inference
    }
}

/// What a scan of Segment payloads found.
#[derive(Clone, Debug, Default)]
pub struct SegmentScan {
    /// Tables in order of first appearance.
    pub tables: Vec<(String, TableScan)>,
    /// Rows the payloads make (a line that makes none counts 1).
    pub rows: u64,
    /// Non-blank lines read.
    pub lines: u64,
}

impl SegmentScan {
    /// Adds the scan of the input's next part.
    pub fn merge(&mut self, later: SegmentScan) {
        for (name, t) in later.tables {
            match self.tables.iter_mut().find(|(n, _)| *n == name) {
                Some((_, mine)) => mine.merge(t),
                None => self.tables.push((name, t)),
            }
        }
        self.rows += later.rows;
        self.lines += later.lines;
    }
}

/// Observes the column types Segment payloads call for, keeping no rows.
#[derive(Debug)]
pub struct SegmentScanner {
    pub(super) reader: Reader,
    pub(super) rows: Vec<RowOf>,
    pub(super) fixed: Vec<(usize, Fixed)>,
    pub(super) text: String,
    pub(super) pending: Vec<(u32, FieldType)>,
}

impl SegmentScanner {
    /// A scanner making rows as `options` says.
    pub fn new(options: SegmentOptions) -> Self {
        SegmentScanner {
            reader: Reader::new(options),
            rows: Vec::new(),
            fixed: Vec::new(),
            text: String::new(),
            pending: Vec::new(),
        }
    }

    /// Scans a chunk of NDJSON (whole lines) whose first line is line `first_line` (1-based).
    pub fn chunk(&mut self, chunk: &[u8], first_line: u64, now: Timestamp) -> SegmentScan {
        self.reader.now = now;
        self.reader.forget_columns();
        let mut tables: Vec<Option<TableScan>> = Vec::new();
        let mut scan = SegmentScan::default();
        for (n, range) in lines(chunk).enumerate() {
            let Ok(text) = std::str::from_utf8(&chunk[range]) else {
                scan.lines += 1;
                scan.rows += 1;
                continue;
            };
            let text = text.trim().trim_start_matches('\u{feff}');
            if text.is_empty() {
                continue;
            }
            scan.lines += 1;
            if let Ok(rows) = self.line(text, &mut tables) {
                scan.rows += rows;
                continue;
            }
            // The other path's rows, observed as they are.
            match bqsink_schema::rows_from_line(text, first_line + n as u64, now, &self.reader.options) {
                Ok(rows) => {
                    scan.rows += rows.len() as u64;
                    for row in rows {
                        let ts = table_scan(&mut tables, self.reader.table(&row.table));
                        for (k, v) in row.record.iter() {
                            if let Some(ty) = scalar_type(v) {
                                let c = ts.column_index(k);
                                ts.observe(c, ty, ts.rows);
                            }
                        }
                        ts.rows += 1;
                    }
                }
                Err(_) => scan.rows += 1,
            }
        }
        for (t, ts) in tables.into_iter().enumerate() {
            if let Some(ts) = ts {
                scan.tables.push((self.reader.tables[t].to_string(), ts));
            }
        }
        scan
    }

    /// Observes the rows of one line; how many.
    fn line(&mut self, line: &str, tables: &mut Vec<Option<TableScan>>) -> Fast<u64> {
        self.reader.line(line)?;
        let mut count = 0;
        for m in 0..self.reader.msgs.len() {
            let msg = self.reader.msgs[m];
            self.reader.rows_of(&msg, &mut self.rows);
            for row in &self.rows {
                let table = match *row {
                    RowOf::Common { table, .. } | RowOf::User { table } => table,
                };
                Reader::fixed(&msg, row, self.reader.now, &mut self.fixed);
                let ts = table_scan(tables, table);
                observe_row(&self.reader, line, &msg, row, &self.fixed, ts, &mut self.text, &mut self.pending);
                count += 1;
            }
        }
        Ok(count)
    }
}

pub(super) fn table_scan(tables: &mut Vec<Option<TableScan>>, table: u32) -> &mut TableScan {
    let t = table as usize;
    if tables.len() <= t {
        tables.resize_with(t + 1, || None);
    }
    tables[t].get_or_insert_with(TableScan::new)
}

/// Observes one row's columns. Columns new to the table are added in the `Record` path's
/// order (fixed ones, then the context's and the custom ones, each by their sorted keys).
#[allow(clippy::too_many_arguments)]
pub(super) fn observe_row(
    reader: &Reader,
    line: &str,
    msg: &Msg,
    row: &RowOf,
    fixed: &[(usize, Fixed)],
    ts: &mut TableScan,
    text: &mut String,
    pending: &mut Vec<(u32, FieldType)>,
) {
    let r = ts.rows;
    for &(f, value) in fixed {
        let ty = match value {
            Fixed::Text(Some(t)) => string_type(reader.text(line, t)),
            Fixed::Slug => string_type(reader.tables.get(msg.event_table as usize).map_or("", |t| &**t)),
            Fixed::Time(Some(_)) => FieldType::Timestamp,
            Fixed::Text(None) | Fixed::Time(None) => continue,
        };
        if ts.fixed[f] == UNSEEN {
            ts.fixed[f] = ts.column_index(FIXED[f].0) as u32;
        }
        ts.observe(ts.fixed[f] as usize, ty, r);
    }
    pending.clear();
    for leaf in reader.row_leaves(msg, row) {
        let ty = leaf_type(line, leaf, text);
        let c = leaf.column as usize;
        if ts.by_column.len() <= c {
            ts.by_column.resize(c + 1, UNSEEN);
        }
        if ts.by_column[c] == UNSEEN {
            match ts.index.get(&reader.columns[c].name) {
                Some(i) => ts.by_column[c] = *i as u32,
                None => {
                    pending.push((leaf.column, ty));
                    continue;
                }
            }
        }
        ts.observe(ts.by_column[c] as usize, ty, r);
    }
    if !pending.is_empty() {
        pending.sort_by(|a, b| reader.columns[a.0 as usize].path.cmp(&reader.columns[b.0 as usize].path));
        for &(c, ty) in pending.iter() {
            let i = ts.column_index(&reader.columns[c as usize].name);
            ts.by_column[c as usize] = i as u32;
            ts.observe(i, ty, r);
        }
    }
    ts.rows += 1;
}

/// The type a leaf's value infers (an array is stored as its JSON text: a STRING).
pub(super) fn leaf_type(line: &str, leaf: Leaf, text: &mut String) -> FieldType {
    let raw = |s: Span| &line[s.start as usize..s.end as usize];
    match leaf.kind {
        LeafKind::Str(body, false) => string_type(raw(body)),
        LeafKind::Str(body, true) => match unescape(raw(body), text) {
            Ok(()) => string_type(text),
            Err(_) => FieldType::String,
        },
        LeafKind::Int(_) => FieldType::Int64,
        LeafKind::Float(_) => FieldType::Float64,
        LeafKind::Decimal => scalar_type_of(Scalar::Decimal(raw(leaf.value))).unwrap_or(FieldType::Float64),
        LeafKind::Bool(_) => FieldType::Bool,
        LeafKind::Array => FieldType::String,
    }
}
