//! Names BigQuery accepts: column names sanitised from arbitrary keys, Segment's snake_case of
//! property and trait names, and table names slugged from event names.
//!
//! bqsink writes columns with *conservative* names — ASCII letters, digits and `_`, starting with
//! a letter or `_`, at most 300 characters, none of BigQuery's reserved prefixes, unique ignoring
//! case — even though BigQuery's flexible column names would accept more: such names work in every
//! SQL dialect and tool without quoting, and as proto field names on the Storage Write API.
//!
//! Non-ASCII characters follow one rule everywhere: a Latin letter with a diacritic folds to its
//! base letter (`é` → `e`, `ß` → `ss`, `Ø` → `O`); any other letter or digit becomes `u` and its
//! code point in lowercase hex (`価` → `u4fa1`), set apart from its neighbours by `_`; anything else
//! is a separator.

use std::collections::{HashMap, HashSet};

use bqsink_core::schema::{MAX_COLUMN_NAME_LEN, RESERVED_PREFIXES};

/// Longest table name BigQuery accepts, in bytes.
pub const MAX_TABLE_NAME_LEN: usize = 1024;

/// The table name used for an event whose name has no letters or digits at all.
pub const UNNAMED_EVENT_TABLE: &str = "unnamed_event";

/// Whether `name` already follows the conservative column-name rule (see the module docs).
pub fn is_valid_column_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else { return false };
    bytes.len() <= MAX_COLUMN_NAME_LEN
        && (first.is_ascii_alphabetic() || first == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !has_reserved_prefix(name)
}

/// Whether `name` starts with one of BigQuery's reserved column prefixes (ignoring case).
pub fn has_reserved_prefix(name: &str) -> bool {
    RESERVED_PREFIXES
        .iter()
        .any(|p| name.len() >= p.len() && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
}

/// The ASCII letters a Latin letter with a diacritic folds to, `None` for anything else.
fn fold_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'à'..='å' | 'ā' | 'ă' | 'ą' | 'ª' => "a",
        'Æ' => "AE",
        'æ' => "ae",
        'Ç' | 'Ć' | 'Ĉ' | 'Ċ' | 'Č' => "C",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'Ð' | 'Ď' | 'Đ' => "D",
        'ð' | 'ď' | 'đ' => "d",
        'È'..='Ë' | 'Ē' | 'Ĕ' | 'Ė' | 'Ę' | 'Ě' => "E",
        'è'..='ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'Ĝ' | 'Ğ' | 'Ġ' | 'Ģ' => "G",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'Ĥ' | 'Ħ' => "H",
        'ĥ' | 'ħ' => "h",
        'Ì'..='Ï' | 'Ĩ' | 'Ī' | 'Ĭ' | 'Į' | 'İ' => "I",
        'ì'..='ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'Ĵ' => "J",
        'ĵ' => "j",
        'Ķ' => "K",
        'ķ' => "k",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ŀ' | 'Ł' => "L",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'Ñ' | 'Ń' | 'Ņ' | 'Ň' => "N",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'Ò'..='Ö' | 'Ø' | 'Ō' | 'Ŏ' | 'Ő' => "O",
        'ò'..='ö' | 'ø' | 'ō' | 'ŏ' | 'ő' | 'º' => "o",
        'Œ' => "OE",
        'œ' => "oe",
        'Ŕ' | 'Ŗ' | 'Ř' => "R",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'Ś' | 'Ŝ' | 'Ş' | 'Š' => "S",
        'ś' | 'ŝ' | 'ş' | 'š' => "s",
        'ß' => "ss",
        'Ţ' | 'Ť' | 'Ŧ' => "T",
        'ţ' | 'ť' | 'ŧ' => "t",
        'Þ' => "TH",
        'þ' => "th",
        'Ù'..='Ü' | 'Ũ' | 'Ū' | 'Ŭ' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ù'..='ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'Ŵ' => "W",
        'ŵ' => "w",
        'Ý' | 'Ŷ' | 'Ÿ' => "Y",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// One piece of a name after the Unicode rule: ASCII text to keep, or a separator.
enum Piece {
    Text(&'static str),
    Char(char),
    Encoded(char),
    Separator,
}

fn piece(c: char) -> Piece {
    if c.is_ascii_alphanumeric() || c == '_' {
        Piece::Char(c)
    } else if c.is_ascii() {
        Piece::Separator
    } else if let Some(folded) = fold_latin(c) {
        Piece::Text(folded)
    } else if c.is_alphanumeric() {
        Piece::Encoded(c)
    } else {
        Piece::Separator
    }
}

/// Writes `c`'s code point the way the Unicode rule encodes it, apart from its neighbours.
fn push_encoded(out: &mut String, c: char) {
    if !out.is_empty() && !out.ends_with('_') {
        out.push('_');
    }
    out.push('u');
    out.push_str(&format!("{:x}", c as u32));
    out.push('_');
}

/// Turns any key into a conservative column name (see the module docs):
///
/// - ASCII letters, digits and `_` are kept (case too);
/// - other characters follow the Unicode rule; runs of separators become one `_`;
/// - a name starting with a digit gets a leading `_`; an empty result is `_`;
/// - a name starting with a reserved prefix (`_TABLE_`, `_PARTITION`, …) gets a leading `_`;
/// - the result is cut to 300 characters.
///
/// Uniqueness needs the other names of the table: see [`NameSet`].
pub fn sanitize_column_name(name: &str) -> String {
    if is_valid_column_name(name) {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len());
    let mut pending_sep = false;
    for c in name.chars() {
        match piece(c) {
            Piece::Separator => pending_sep = true,
            Piece::Char(ch) => {
                if pending_sep && !out.is_empty() && !out.ends_with('_') {
                    out.push('_');
                }
                pending_sep = false;
                out.push(ch);
            }
            Piece::Text(t) => {
                if pending_sep && !out.is_empty() && !out.ends_with('_') {
                    out.push('_');
                }
                pending_sep = false;
                out.push_str(t);
            }
            Piece::Encoded(ch) => {
                pending_sep = false;
                push_encoded(&mut out, ch);
            }
        }
    }
    // An encoded character leaves a `_` behind it; drop it at the very end.
    if out.ends_with('_') && !name.ends_with('_') && out.len() > 1 {
        out.pop();
    }
    if out.is_empty() {
        out.push('_');
    }
    if out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    while has_reserved_prefix(&out) {
        out.insert(0, '_');
    }
    truncate_ascii(&mut out, MAX_COLUMN_NAME_LEN);
    out
}

fn truncate_ascii(s: &mut String, max: usize) {
    if s.len() > max {
        // Only ASCII is ever written by the sanitisers, so every byte index is a boundary.
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Segment's snake_case of a property or trait name: a `_` between a lowercase letter or digit
/// and an uppercase letter (`camelCase` → `camel_case`), and before the last capital of an
/// acronym followed by lowercase (`HTTPServer` → `http_server`); spaces, dashes, dots and other
/// punctuation become `_`, runs of `_` collapse, leading and trailing `_` go; letters are
/// lowercased (Unicode too: `Prénom` → `prénom`). The result may still hold non-ASCII letters; pass
/// it through [`sanitize_column_name`] for a column name ([`segment_column_name`] does both).
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    let mut pending_sep = false;
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            pending_sep = true;
            continue;
        }
        let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
        let next = chars.get(i + 1).copied();
        if c.is_uppercase() {
            let after_lower = prev.is_some_and(|p| p.is_lowercase() || p.is_numeric());
            let acronym_end = prev.is_some_and(char::is_uppercase) && next.is_some_and(char::is_lowercase);
            if after_lower || acronym_end {
                pending_sep = true;
            }
        }
        if pending_sep && !out.is_empty() {
            out.push('_');
        }
        pending_sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// A Segment property or trait name as a column: [`snake_case`] then [`sanitize_column_name`].
pub fn segment_column_name(name: &str) -> String {
    sanitize_column_name(&snake_case(name))
}

/// A track event's table name: lowercase, the Unicode rule (see the module docs), runs of other
/// characters → `_`, trimmed of `_`. An empty result is [`UNNAMED_EVENT_TABLE`]; a name starting
/// with a digit gets a leading `_`; at most 1024 bytes. Segment's own base tables are not avoided
/// here — see `segment::event_table_name`.
pub fn table_slug(event: &str) -> String {
    let mut out = String::with_capacity(event.len());
    let mut pending_sep = false;
    for c in event.chars() {
        match piece(c) {
            Piece::Char('_') | Piece::Separator => pending_sep = true,
            Piece::Char(ch) => {
                let lower = ch.to_ascii_lowercase();
                push_text(&mut out, &mut pending_sep, lower.encode_utf8(&mut [0u8; 4]));
            }
            Piece::Text(t) => push_text(&mut out, &mut pending_sep, &t.to_ascii_lowercase()),
            Piece::Encoded(ch) => {
                let lower = ch.to_lowercase().next().unwrap_or(ch);
                push_text(&mut out, &mut pending_sep, &format!("u{:x}", lower as u32));
                pending_sep = true;
            }
        }
    }
    if out.is_empty() {
        return UNNAMED_EVENT_TABLE.to_owned();
    }
    if out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    truncate_ascii(&mut out, MAX_TABLE_NAME_LEN);
    out
}

fn push_text(out: &mut String, pending: &mut bool, t: &str) {
    if *pending && !out.is_empty() {
        out.push('_');
    }
    *pending = false;
    out.push_str(t);
}

/// Checks a table name bqsink creates: 1–1024 bytes of ASCII letters, digits and `_`. (BigQuery
/// itself also accepts Unicode letters, dashes and spaces; names that need quoting in every query
/// are refused for tables bqsink names itself.) Returns why a name is refused.
pub fn validate_table_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("a table name cannot be empty");
    }
    if name.len() > MAX_TABLE_NAME_LEN {
        return Err("a table name is at most 1024 bytes");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("a table name holds only ASCII letters, digits and `_`");
    }
    Ok(())
}

/// The column names of one table (or one RECORD), unique ignoring case: hands out a fresh name
/// for a key whose sanitised name is already taken by another key, by appending `_2`, `_3`, ….
#[derive(Clone, Debug, Default)]
pub struct NameSet {
    /// Column by key.
    columns: HashMap<String, String>,
    /// Columns handed out, lowercased (names are unique ignoring ASCII case).
    taken: HashSet<String>,
    /// For each sanitised name, the suffix number to try next: the ones below it are taken,
    /// and names are never given back. Keeps many keys that sanitise alike linear, not cubic.
    next_suffix: HashMap<String, u32>,
}

impl NameSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a column name (ignoring case) is taken.
    pub fn contains(&self, column: &str) -> bool {
        self.taken.contains(&column.to_ascii_lowercase())
    }

    /// The column for `key` (whose sanitised name is `sanitised`): the same key always gets the
    /// same column; a different key whose sanitised name clashes (ignoring case) with a column
    /// already handed out gets a numbered one.
    pub fn column_for(&mut self, key: &str, sanitised: String) -> String {
        if let Some(col) = self.columns.get(key) {
            return col.clone();
        }
        let mut candidate = sanitised.clone();
        let mut lower = candidate.to_ascii_lowercase();
        if self.taken.contains(&lower) {
            let next = self.next_suffix.entry(sanitised.clone()).or_insert(2);
            loop {
                let suffix = format!("_{next}");
                let mut base = sanitised.clone();
                truncate_ascii(&mut base, MAX_COLUMN_NAME_LEN - suffix.len());
                candidate = base + &suffix;
                *next += 1;
                lower = candidate.to_ascii_lowercase();
                if !self.taken.contains(&lower) {
                    break;
                }
            }
        }
        self.taken.insert(lower);
        self.columns.insert(key.to_owned(), candidate.clone());
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sanitises_column_names() {
        assert_eq!(sanitize_column_name("plain_name"), "plain_name");
        assert_eq!(sanitize_column_name("first name"), "first_name");
        assert_eq!(sanitize_column_name("a-b--c"), "a_b_c");
        assert_eq!(sanitize_column_name("1st"), "_1st");
        assert_eq!(sanitize_column_name(""), "_");
        assert_eq!(sanitize_column_name("!!!"), "_");
        assert_eq!(sanitize_column_name("événement"), "evenement");
        assert_eq!(sanitize_column_name("Straße"), "Strasse");
        assert_eq!(sanitize_column_name("価格"), "u4fa1_u683c");
        assert_eq!(sanitize_column_name("price 価格"), "price_u4fa1_u683c");
        assert_eq!(sanitize_column_name("_PARTITIONTIME"), "__PARTITIONTIME");
        assert_eq!(sanitize_column_name("_table_x"), "__table_x");
        assert_eq!(sanitize_column_name("a.b"), "a_b");
        let long = "x".repeat(400);
        assert_eq!(sanitize_column_name(&long).len(), 300);
    }

    #[test]
    fn reserved_prefixes_are_refused_ignoring_case() {
        for p in RESERVED_PREFIXES {
            let name = format!("{p}x");
            assert!(!is_valid_column_name(&name), "{name}");
            assert!(!is_valid_column_name(&name.to_ascii_lowercase()), "{name}");
            assert!(is_valid_column_name(&sanitize_column_name(&name)), "{name}");
        }
        assert!(is_valid_column_name("_parti"));
        assert!(!is_valid_column_name("_partition"));
        assert!(!is_valid_column_name("_partitiontime"));
    }

    #[test]
    fn snake_cases_like_segment() {
        assert_eq!(snake_case("camelCase"), "camel_case");
        assert_eq!(snake_case("PascalCase"), "pascal_case");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("userID"), "user_id");
        assert_eq!(snake_case("first name"), "first_name");
        assert_eq!(snake_case("plan-type"), "plan_type");
        assert_eq!(snake_case("  spaced  out  "), "spaced_out");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(snake_case("address1Line"), "address1_line");
        assert_eq!(snake_case("__private"), "private");
        assert_eq!(snake_case("Prénom"), "prénom");
        assert_eq!(segment_column_name("Prénom"), "prenom");
        assert_eq!(segment_column_name("会員ランク"), "u4f1a_u54e1_u30e9_u30f3_u30af");
        assert_eq!(segment_column_name("userId"), "user_id");
        assert_eq!(segment_column_name("123abc"), "_123abc");
    }

    #[test]
    fn slugs_event_names() {
        assert_eq!(table_slug("Order Completed"), "order_completed");
        assert_eq!(table_slug("  Signed Up!! "), "signed_up");
        assert_eq!(table_slug("checkout--step_2"), "checkout_step_2");
        assert_eq!(table_slug("__x__"), "x");
        assert_eq!(table_slug("3D Secure Passed"), "_3d_secure_passed");
        assert_eq!(table_slug(""), UNNAMED_EVENT_TABLE);
        assert_eq!(table_slug("!!!"), UNNAMED_EVENT_TABLE);
        assert_eq!(table_slug("Café Visité"), "cafe_visite");
        assert_eq!(table_slug("購入"), "u8cfc_u5165");
    }

    #[test]
    fn table_names_are_checked() {
        assert!(validate_table_name("order_completed").is_ok());
        assert!(validate_table_name("").is_err());
        assert!(validate_table_name("a b").is_err());
        assert!(validate_table_name("a`b").is_err());
        assert!(validate_table_name(&"t".repeat(1025)).is_err());
    }

    #[test]
    fn name_set_keeps_names_unique_ignoring_case() {
        let mut names = NameSet::new();
        assert_eq!(names.column_for("id", "id".into()), "id");
        assert_eq!(names.column_for("ID", "ID".into()), "ID_2");
        assert_eq!(names.column_for("a b", "a_b".into()), "a_b");
        assert_eq!(names.column_for("a-b", "a_b".into()), "a_b_2");
        assert_eq!(names.column_for("a b", "a_b".into()), "a_b");
        assert_eq!(names.column_for("A_B", "A_B".into()), "A_B_3");
        let mut long = NameSet::new();
        let base = "y".repeat(300);
        assert_eq!(long.column_for("k1", base.clone()), base);
        let second = long.column_for("k2", base.clone());
        assert_eq!(second.len(), 300);
        assert!(second.ends_with("_2"));
    }

    /// Found with large Segment payloads under a time limit: each key was looked for among all
    /// the names before it, and keys that sanitise alike tried `_2`, `_3`, … from the start, so
    /// 20,000 properties took minutes.
    #[test]
    fn many_keys_that_sanitise_alike_get_names_in_linear_time() {
        let started = std::time::Instant::now();
        let mut names = NameSet::new();
        assert_eq!(names.column_for("a_3", "a_3".into()), "a_3");
        let n = 50_000;
        let got: Vec<String> =
            (0..n).map(|i| names.column_for(&format!("a{}", " ".repeat(i % 7 + 1)), "a".into())).collect();
        // Only 7 distinct keys: the same key keeps its column.
        assert_eq!(&got[..8], &["a", "a_2", "a_4", "a_5", "a_6", "a_7", "a_8", "a"]);
        let mut wide = NameSet::new();
        for i in 0..n {
            let key = format!("k-{i}");
            assert_eq!(wide.column_for(&key, format!("k_{i}")), format!("k_{i}"));
            assert_eq!(wide.column_for(&format!("k {i}"), format!("k_{i}")), format!("k_{i}_2"));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }

    proptest! {
        #[test]
        fn any_key_sanitises_to_a_valid_name(key in "\\PC{0,40}") {
            let name = sanitize_column_name(&key);
            prop_assert!(is_valid_column_name(&name), "{key:?} -> {name:?}");
            prop_assert_eq!(sanitize_column_name(&name), name.clone());
            let seg = segment_column_name(&key);
            prop_assert!(is_valid_column_name(&seg), "{key:?} -> {seg:?}");
        }

        #[test]
        fn any_event_slugs_to_a_valid_table(event in "\\PC{0,40}") {
            let t = table_slug(&event);
            prop_assert!(validate_table_name(&t).is_ok(), "{event:?} -> {t:?}");
            prop_assert!(!t.starts_with('_') || t.as_bytes().get(1).is_some_and(u8::is_ascii_digit));
            prop_assert!(!t.ends_with('_'));
            prop_assert_eq!(t.to_ascii_lowercase(), t.clone());
        }
    }
}
