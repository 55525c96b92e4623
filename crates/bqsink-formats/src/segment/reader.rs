//! One payload line read in one pass: top-level members by their expected place, objects
//! flattened into columns as they are read, every value kept as a span of the line.

use super::*;

/// What reading lines needs, shared by the scanner and the transcoder.
#[derive(Debug)]
pub(super) struct Reader {
    pub(super) options: SegmentOptions,
    pub(super) now: Timestamp,
    pub(super) columns: Vec<Column>,
    pub(super) by_path: FxHashMap<Box<[u8]>, u32>,
    pub(super) folds: FxHashMap<Box<str>, u32>,
    /// Table names by index, and the index of each.
    pub(super) tables: Vec<Arc<str>>,
    pub(super) table_index: HashMap<Arc<str>, u32>,
    /// An event's name as sent → its table.
    pub(super) events: HashMap<Box<str>, u32>,
    // Scratch, kept between lines.
    pub(super) leaves: Vec<Leaf>,
    pub(super) path: Vec<u8>,
    pub(super) arena: String,
    pub(super) msgs: Vec<Msg>,
    pub(super) fold_seen: Vec<u32>,
    pub(super) generation: u32,
    /// The first key of `context` and of properties and traits, guessed like [`Column::next`].
    pub(super) first_key: [u32; 2],
    /// The object being flattened: `c` context, `p` properties or traits.
    pub(super) marker: u8,
    /// The keys of a line's object and of a batch item, in their last order.
    pub(super) shapes: [Vec<u8>; 2],
}

impl Reader {
    pub(super) fn new(options: SegmentOptions) -> Self {
        let mut r = Reader {
            options,
            now: Timestamp::UNIX_EPOCH,
            columns: Vec::new(),
            by_path: FxHashMap::default(),
            folds: FxHashMap::default(),
            tables: Vec::new(),
            table_index: HashMap::new(),
            events: HashMap::new(),
            leaves: Vec::new(),
            path: Vec::new(),
            arena: String::new(),
            msgs: Vec::new(),
            fold_seen: Vec::new(),
            generation: 0,
            first_key: [NONE; 2],
            marker: b'c',
            shapes: Default::default(),
        };
        for t in KINDS {
            r.table(t);
        }
        r
    }

    pub(super) fn table(&mut self, name: &str) -> u32 {
        if let Some(i) = self.table_index.get(name) {
            return *i;
        }
        let i = self.tables.len() as u32;
        let name: Arc<str> = name.into();
        self.tables.push(name.clone());
        self.table_index.insert(name, i);
        i
    }

    pub(super) fn text<'a>(&'a self, line: &'a str, t: Text) -> &'a str {
        match t {
            Text::Input(s) => &line[s.start as usize..s.end as usize],
            Text::Arena(s) => &self.arena[s.start as usize..s.end as usize],
        }
    }

    /// Reads every message of a line into `self.msgs`.
    pub(super) fn line(&mut self, line: &str) -> Fast<()> {
        self.leaves.clear();
        self.arena.clear();
        self.msgs.clear();
        let mut p = Parser { s: line, b: line.as_bytes(), i: 0 };
        p.ws();
        let mut top = Members::default();
        self.members(&mut p, &mut top, 0)?;
        p.ws();
        if p.i != p.b.len() {
            return Err(Slow);
        }
        let Some(Val { span: batch, .. }) = top.spans[BATCH] else {
            let m = self.message(line, &top, None)?;
            self.msgs.push(m);
            return Ok(());
        };
        let mut p = Parser { s: line, b: line.as_bytes(), i: batch.start as usize };
        if !p.eat(b'[') {
            return Err(Slow);
        }
        p.ws();
        if p.eat(b']') {
            return Ok(());
        }
        loop {
            p.ws();
            let mut item = Members::default();
            self.members(&mut p, &mut item, 1)?;
            let m = self.message(line, &item, Some(&top))?;
            self.msgs.push(m);
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b']') => return Ok(()),
                _ => return Err(Slow),
            }
        }
    }

    /// Reads an object's members (the cursor on `{`), keeping those Segment reads and
    /// flattening `context`, `properties` and `traits` on the way.
    /// `shape` 0 is a line's own object, 1 an item of a batch: each keeps the order of keys
    /// it last had, matched before any key is parsed.
    pub(super) fn members(&mut self, p: &mut Parser<'_>, out: &mut Members, shape: usize) -> Fast<()> {
        if !p.eat(b'{') {
            return Err(Slow);
        }
        p.ws();
        if p.eat(b'}') {
            return Ok(());
        }
        let mut n = 0;
        loop {
            p.ws();
            if p.peek() != Some(b'"') {
                return Err(Slow);
            }
            let guess = self.shapes[shape].get(n).copied().filter(|&g| {
                g != OTHER_KEY
                    && same_bytes(p.b.get(p.i..p.i + QUOTED_KEYS[usize::from(g)].len()), QUOTED_KEYS[usize::from(g)])
            });
            let ix = match guess {
                Some(g) => {
                    p.i += QUOTED_KEYS[usize::from(g)].len();
                    Some(usize::from(g))
                }
                None => {
                    let k = p.string_ref().map_err(slow)?;
                    if k.escaped {
                        return Err(Slow);
                    }
                    let key = &p.b[k.start as usize..k.end as usize];
                    let ix = KEYS.iter().position(|k| *k == key);
                    let code = ix.map_or(OTHER_KEY, |i| i as u8);
                    match self.shapes[shape].get_mut(n) {
                        Some(g) => *g = code,
                        None => self.shapes[shape].push(code),
                    }
                    ix
                }
            };
            n += 1;
            p.ws();
            if !p.eat(b':') {
                return Err(Slow);
            }
            p.ws();
            let start = p.i;
            match ix {
                Some(ix @ (CONTEXT | PROPERTIES | TRAITS)) if p.peek() == Some(b'{') => {
                    let marker = if ix == CONTEXT { b'c' } else { b'p' };
                    out.flat[ix - CONTEXT] = Some(self.flatten(p, marker)?);
                    out.spans[ix] = Some(Val { span: Span { start: start as u32, end: p.i as u32 }, body: None });
                }
                Some(ix) => {
                    let body = match p.peek() {
                        Some(b'"') => Some(p.string_ref().map_err(slow)?),
                        _ => {
                            p.skip_value().map_err(slow)?;
                            None
                        }
                    };
                    let null = &p.b[start..p.i] == b"null";
                    let span = Span { start: start as u32, end: p.i as u32 };
                    out.spans[ix] = (!null).then_some(Val { span, body });
                    if (CONTEXT..=TRAITS).contains(&ix) {
                        out.flat[ix - CONTEXT] = None;
                    }
                }
                None => p.skip_value().map_err(slow)?,
            }
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    return Ok(());
                }
                _ => return Err(Slow),
            }
        }
    }

    pub(super) fn message(&mut self, line: &str, m: &Members, envelope: Option<&Members>) -> Fast<Msg> {
        let field = |k: usize| m.spans[k].or_else(|| envelope.and_then(|e| e.spans[k]));
        let call = {
            let t = self.string(line, m.spans[TYPE].ok_or(Slow)?)?;
            Call::parse(self.text(line, t)).ok_or(Slow)?
        };
        let received_at = self.timestamp(line, field(RECEIVED_AT))?.unwrap_or(self.now);
        let sent_at = self.timestamp(line, field(SENT_AT))?;
        let original = match self.timestamp(line, m.spans[ORIGINAL_TIMESTAMP])? {
            Some(t) => Some(t),
            None => self.timestamp(line, m.spans[TIMESTAMP])?,
        };
        let timestamp = corrected_timestamp(received_at, sent_at, original);
        // A message without an id gets one derived from its whole text: the other path.
        let id = self.id(line, m.spans[MESSAGE_ID])?.ok_or(Slow)?;
        let user_id = self.id(line, m.spans[USER_ID])?;
        let anonymous_id = self.id(line, m.spans[ANONYMOUS_ID])?;
        // The message's own context when it is an object, else the envelope's.
        let context = match (m.flat[0], envelope) {
            (Some(c), _) => c,
            (None, Some(env)) => env.leaves(CONTEXT)?,
            (None, None) => m.leaves(CONTEXT)?,
        };
        let mut msg = Msg {
            call,
            id,
            anonymous_id,
            user_id,
            received_at,
            sent_at,
            original,
            timestamp,
            event: None,
            event_table: 0,
            name: None,
            category: None,
            group_id: None,
            previous_id: None,
            context,
            custom: (0, 0),
        };
        match call {
            Call::Track => {
                let event = self.text_field(line, m.spans[EVENT])?.ok_or(Slow)?;
                if self.text(line, event).trim().is_empty() {
                    return Err(Slow);
                }
                msg.event = Some(event);
                msg.event_table = self.event_table(line, event);
                if self.options.event_tables {
                    msg.custom = m.leaves(PROPERTIES)?;
                }
            }
            Call::Identify => msg.custom = m.leaves(TRAITS)?,
            Call::Page | Call::Screen => {
                msg.name = self.text_field(line, m.spans[NAME])?;
                msg.category = self.text_field(line, m.spans[CATEGORY])?;
                msg.custom = m.leaves(PROPERTIES)?;
            }
            Call::Group => {
                msg.group_id = Some(self.id(line, m.spans[GROUP_ID])?.ok_or(Slow)?);
                msg.custom = m.leaves(TRAITS)?;
            }
            Call::Alias => msg.previous_id = Some(self.id(line, m.spans[PREVIOUS_ID])?.ok_or(Slow)?),
        }
        Ok(msg)
    }

    pub(super) fn event_table(&mut self, line: &str, event: Text) -> u32 {
        let text = self.text(line, event);
        if let Some(t) = self.events.get(text) {
            return *t;
        }
        let text: Box<str> = text.into();
        let t = self.table(&event_table_name(&text));
        self.events.insert(text, t);
        t
    }

    /// The rows a message makes, in the order the `Record` path makes them.
    pub(super) fn rows_of(&self, msg: &Msg, out: &mut Vec<RowOf>) {
        out.clear();
        match msg.call {
            Call::Track => {
                out.push(RowOf::Common { table: 0, custom: false });
                if self.options.event_tables {
                    out.push(RowOf::Common { table: msg.event_table, custom: true });
                }
            }
            Call::Identify => {
                out.push(RowOf::Common { table: 1, custom: true });
                if self.options.users_table && msg.user_id.is_some() {
                    out.push(RowOf::User { table: 2 });
                }
            }
            Call::Page => out.push(RowOf::Common { table: 3, custom: true }),
            Call::Screen => out.push(RowOf::Common { table: 4, custom: true }),
            Call::Group => out.push(RowOf::Common { table: 5, custom: true }),
            Call::Alias => out.push(RowOf::Common { table: 6, custom: false }),
        }
    }

    /// The fixed columns of a row, in the `Record` path's order.
    pub(super) fn fixed(msg: &Msg, row: &RowOf, now: Timestamp, out: &mut Vec<(usize, Fixed)>) {
        out.clear();
        let text = |t: Option<Text>| Fixed::Text(t);
        let time = |t: Option<Timestamp>| Fixed::Time(t);
        if let RowOf::User { .. } = row {
            out.push((F_ID, text(msg.user_id)));
            out.push((F_RECEIVED_AT, time(Some(msg.received_at))));
            out.push((F_UUID_TS, time(Some(now))));
            out.push((F_LOADED_AT, time(Some(now))));
            return;
        }
        out.push((F_ID, text(Some(msg.id))));
        out.push((F_ANONYMOUS_ID, text(msg.anonymous_id)));
        out.push((F_USER_ID, text(msg.user_id)));
        out.push((F_RECEIVED_AT, time(Some(msg.received_at))));
        out.push((F_SENT_AT, time(msg.sent_at)));
        out.push((F_ORIGINAL_TIMESTAMP, time(msg.original)));
        out.push((F_TIMESTAMP, time(Some(msg.timestamp))));
        out.push((F_UUID_TS, time(Some(now))));
        out.push((F_LOADED_AT, time(Some(now))));
        match msg.call {
            Call::Track => {
                // `event` holds the table's name; the name as sent is `event_text`.
                out.push((F_EVENT, Fixed::Slug));
                out.push((F_EVENT_TEXT, text(msg.event)));
            }
            Call::Page | Call::Screen => {
                out.push((F_NAME, text(msg.name)));
                out.push((F_CATEGORY, text(msg.category)));
            }
            Call::Group => out.push((F_GROUP_ID, text(msg.group_id))),
            Call::Alias => out.push((F_PREVIOUS_ID, text(msg.previous_id))),
            Call::Identify => {}
        }
    }

    /// A string member, decoded when it has escapes.
    pub(super) fn string(&mut self, line: &str, v: Val) -> Fast<Text> {
        let k = match v.body {
            Some(k) => k,
            None => {
                let mut p = Parser { s: line, b: line.as_bytes(), i: v.span.start as usize };
                if p.peek() != Some(b'"') {
                    return Err(Slow);
                }
                p.string_ref().map_err(slow)?
            }
        };
        if !k.escaped {
            return Ok(Text::Input(Span { start: k.start, end: k.end }));
        }
        let mut decoded = String::new();
        unescape(&line[k.start as usize..k.end as usize], &mut decoded).map_err(slow)?;
        let start = self.arena.len() as u32;
        self.arena.push_str(&decoded);
        Ok(Text::Arena(Span { start, end: self.arena.len() as u32 }))
    }

    pub(super) fn text_field(&mut self, line: &str, s: Option<Val>) -> Fast<Option<Text>> {
        s.map(|s| self.string(line, s)).transpose()
    }

    pub(super) fn timestamp(&mut self, line: &str, s: Option<Val>) -> Fast<Option<Timestamp>> {
        let Some(s) = s else { return Ok(None) };
        let t = self.string(line, s)?;
        Timestamp::parse(self.text(line, t)).map(Some).ok_or(Slow)
    }

    /// An id: a string as it is (empty is none), an integer as its digits.
    pub(super) fn id(&mut self, line: &str, v: Option<Val>) -> Fast<Option<Text>> {
        let Some(v) = v else { return Ok(None) };
        let s = v.span;
        let raw = &line.as_bytes()[s.start as usize..s.end as usize];
        match raw.first() {
            Some(b'"') => {
                let t = self.string(line, v)?;
                Ok((!self.text(line, t).is_empty()).then_some(t))
            }
            // Plain integers print as they are read; other numbers take the other path.
            Some(b'1'..=b'9') if raw.len() <= 18 && raw.iter().all(u8::is_ascii_digit) => Ok(Some(Text::Input(s))),
            Some(b'0') if raw.len() == 1 => Ok(Some(Text::Input(s))),
            _ => Err(Slow),
        }
    }

    /// Flattens the object under the cursor into leaves, in one pass; returns their range.
    /// Keys are read in input order: where order matters (planning new columns) they are
    /// sorted by their paths, which is the `Record` path's order.
    pub(super) fn flatten(&mut self, p: &mut Parser<'_>, marker: u8) -> Fast<(u32, u32)> {
        let start = self.leaves.len() as u32;
        self.marker = marker;
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.fold_seen.iter_mut().for_each(|g| *g = 0);
            self.generation = 1;
        }
        self.object(p, 0, NONE)?;
        Ok((start, self.leaves.len() as u32))
    }

    /// The first key last seen inside `parent` (the top of the object when `NONE`).
    pub(super) fn first_key_of(&self, parent: u32) -> u32 {
        match self.columns.get(parent as usize) {
            Some(c) => c.first_child,
            None => self.first_key[usize::from(self.marker == b'p')],
        }
    }

    pub(super) fn set_first_key(&mut self, parent: u32, c: u32) {
        match self.columns.get_mut(parent as usize) {
            Some(p) => p.first_child = c,
            None => self.first_key[usize::from(self.marker == b'p')] = c,
        }
    }

    pub(super) fn object(&mut self, p: &mut Parser<'_>, depth: usize, parent: u32) -> Fast<()> {
        if depth > MAX_FLATTEN_DEPTH {
            return Err(Slow);
        }
        p.i += 1; // '{'
        p.ws();
        if p.eat(b'}') {
            return Ok(());
        }
        let mut expected = self.first_key_of(parent);
        let mut previous = NONE;
        loop {
            p.ws();
            if p.peek() != Some(b'"') {
                return Err(Slow);
            }
            // The key that came here last time, as it is spelled: no parse, no lookup.
            let guessed = self
                .columns
                .get(expected as usize)
                .map(|c| c.quoted.len())
                .filter(|&n| same_bytes(p.b.get(p.i..p.i + n), &self.columns[expected as usize].quoted));
            let column = match guessed {
                Some(n) => {
                    p.i += n;
                    expected
                }
                None => {
                    let k = p.string_ref().map_err(slow)?;
                    if k.escaped {
                        return Err(Slow);
                    }
                    // The key's path: its parent's, then the key.
                    self.path.clear();
                    match self.columns.get(parent as usize) {
                        Some(pc) => {
                            self.path.extend_from_slice(&pc.path);
                            self.path.push(0);
                        }
                        None => self.path.push(self.marker),
                    }
                    self.path.extend_from_slice(&p.b[k.start as usize..k.end as usize]);
                    let c = self.column()?;
                    match self.columns.get_mut(previous as usize) {
                        Some(prev) => prev.next = c,
                        None => self.set_first_key(parent, c),
                    }
                    c
                }
            };
            expected = self.columns[column as usize].next;
            previous = column;
            p.ws();
            if !p.eat(b':') {
                return Err(Slow);
            }
            p.ws();
            // A key met twice, or two keys making one column (ignoring case): the other path
            // keeps the last one or numbers them.
            let fold = self.columns[column as usize].fold as usize;
            if self.fold_seen.len() <= fold {
                self.fold_seen.resize(fold + 1, 0);
            }
            if self.fold_seen[fold] == self.generation {
                return Err(Slow);
            }
            self.fold_seen[fold] = self.generation;
            let start = p.i as u32;
            let kind = match p.peek() {
                Some(b'n') => {
                    p.literal("null").map_err(slow)?;
                    None
                }
                Some(b'{') => {
                    self.object(p, depth + 1, column)?;
                    None
                }
                Some(b'[') => {
                    p.skip_value().map_err(slow)?;
                    let inner = &p.b[start as usize + 1..p.i - 1];
                    (!inner.iter().all(u8::is_ascii_whitespace)).then_some(LeafKind::Array)
                }
                Some(b'"') => {
                    let s = p.string_ref().map_err(slow)?;
                    Some(LeafKind::Str(Span { start: s.start, end: s.end }, s.escaped))
                }
                Some(b't') => p.literal("true").map(|()| Some(LeafKind::Bool(true))).map_err(slow)?,
                Some(b'f') => p.literal("false").map(|()| Some(LeafKind::Bool(false))).map_err(slow)?,
                _ => match p.number().map_err(slow)? {
                    Scalar::Int(i) => Some(LeafKind::Int(i)),
                    Scalar::Float(f) => Some(LeafKind::Float(f)),
                    _ => Some(LeafKind::Decimal),
                },
            };
            if let Some(kind) = kind {
                self.leaves.push(Leaf { column, value: Span { start, end: p.i as u32 }, kind });
            }
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    return Ok(());
                }
                _ => return Err(Slow),
            }
        }
    }

    /// The column of the flattened key in `self.path`.
    pub(super) fn column(&mut self) -> Fast<u32> {
        if let Some(c) = self.by_path.get(self.path.as_slice()) {
            return Ok(*c);
        }
        let (marker, keys) = self.path.split_first().ok_or(Slow)?;
        let mut joined = String::new();
        for key in keys.split(|b| *b == 0) {
            joined = flattened_key(&joined, std::str::from_utf8(key).map_err(slow)?);
        }
        let mut name = sanitize_column_name(&joined);
        let mut reserved = 0u8;
        if *marker == b'c' {
            name = sanitize_column_name(&format!("context_{name}"));
        } else {
            for (k, table) in KINDS.iter().enumerate() {
                if is_reserved_column(table, &name) {
                    reserved |= 1 << k;
                }
            }
        }
        let lower: Box<str> = name.to_ascii_lowercase().into();
        let next = self.folds.len() as u32;
        let fold = *self.folds.entry(lower).or_insert(next);
        let c = self.columns.len() as u32;
        let path: Box<[u8]> = self.path.as_slice().into();
        let key = keys.rsplit(|b| *b == 0).next().unwrap_or_default();
        let mut quoted = Vec::with_capacity(key.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(key);
        quoted.push(b'"');
        self.columns.push(Column {
            name: name.into(),
            path: path.clone(),
            fold,
            reserved,
            quoted: quoted.into(),
            next: NONE,
            first_child: NONE,
        });
        self.by_path.insert(path, c);
        Ok(c)
    }

    /// Starts the column caches over when they grew too big (between chunks: callers keep
    /// column ids only within one); `true` when they did.
    pub(super) fn forget_columns(&mut self) -> bool {
        if self.columns.len() <= MAX_CACHED_COLUMNS {
            return false;
        }
        self.columns.clear();
        self.first_key = [NONE; 2];
        self.by_path.clear();
        self.folds.clear();
        self.fold_seen.clear();
        true
    }

    /// The leaves a row of `table` takes: the context, then (unless reserved there) the custom ones.
    pub(super) fn row_leaves(&self, msg: &Msg, row: &RowOf) -> impl Iterator<Item = Leaf> + '_ {
        let (context, custom, kind) = match *row {
            RowOf::Common { table, custom } => {
                let name = self.tables.get(table as usize).map_or("", |t| &**t);
                (true, custom, kind_of(name))
            }
            RowOf::User { .. } => (false, true, kind_of("users")),
        };
        let ctx = if context { &self.leaves[msg.context.0 as usize..msg.context.1 as usize] } else { &[] };
        let cus = if custom { &self.leaves[msg.custom.0 as usize..msg.custom.1 as usize] } else { &[] };
        ctx.iter()
            .copied()
            .chain(cus.iter().copied().filter(move |l| self.columns[l.column as usize].reserved & (1 << kind) == 0))
    }

    /// The JSON text an array is stored as (the `Record` path's rendering of the value).
    pub(super) fn array_text(line: &str, v: Span) -> Fast<String> {
        let raw = &line[v.start as usize..v.end as usize];
        let json: serde_json::Value = serde_json::from_str(raw).map_err(slow)?;
        Ok(Value::from(json).to_json_string())
    }
}
