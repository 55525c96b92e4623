//! The compound parts of the typed serializer: a row or RECORD as a message (`MessageSer`, for
//! structs and maps), REPEATED columns (`SeqSer`, for sequences and tuples), and map keys read
//! as column names (`KeySer`).

use super::*;

/// The fields of a struct or the entries of a map, into the columns of one message.
pub(super) struct MessageSer<'a> {
    st: &'a mut Scratch,
    plan: &'a MessagePlan,
    out: &'a mut Vec<u8>,
    /// Where the length prefix of a RECORD value's body is (none for the row).
    body: Option<usize>,
    msg_start: usize,
    member: usize,
    last: Option<usize>,
    in_order: bool,
}

impl<'a> MessageSer<'a> {
    pub(super) fn new(st: &'a mut Scratch, plan: &'a MessagePlan, out: &'a mut Vec<u8>, body: Option<usize>) -> Self {
        let base = plan.slot_base;
        st.slots[base..base + plan.fields.len()].fill(Slot::Absent);
        let msg_start = out.len();
        Self { st, plan, out, body, msg_start, member: 0, last: None, in_order: true }
    }

    pub(super) fn entry<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Done<()> {
        let plan = self.plan;
        // Fields in schema order hit the positional guess and skip hashing.
        let idx = match plan.fields.get(self.member) {
            Some(f) if f.name == key => Some(self.member),
            _ => plan.lookup(key),
        };
        self.member += 1;
        let Some(idx) = idx else {
            if self.st.unknown == UnknownFields::Reject {
                return Err(Bail);
            }
            // Ignored, but checked as the transcoder checks what it skips.
            let mut skipped = std::mem::take(&mut self.st.skipped);
            skipped.clear();
            let checked =
                serde_json::to_writer(&mut skipped, value).map_err(|_| Bail).and_then(|()| check_json(&skipped));
            self.st.skipped = skipped;
            return checked;
        };
        let field = &plan.fields[idx];
        let exact = field.name == key;
        let slot = &mut self.st.slots[plan.slot_base + idx];
        match *slot {
            Slot::Absent => {}
            // The same key again: the later value wins, as in a JSON object read whole.
            Slot::Null { exact: true } | Slot::Written { exact: true, .. } if exact => self.in_order = false,
            // Another spelling of the column: refused (the transcoder says how).
            _ => return Err(Bail),
        }
        if self.last.is_some_and(|l| idx <= l) {
            self.in_order = false;
        }
        self.last = Some(idx);
        let start = self.out.len();
        let outcome = if field.field_type == FieldType::Json && field.mode != Mode::Repeated {
            match json_value(value, field.tag, self.out)? {
                Some(_) => Outcome::Written,
                None => Outcome::Null,
            }
        } else {
            value.serialize(ValueSer { st: &mut *self.st, out: &mut *self.out, target: Target::Column(field) })?
        };
        self.st.slots[plan.slot_base + idx] = match outcome {
            Outcome::Written => Slot::Written { start, end: self.out.len(), exact },
            Outcome::Null => Slot::Null { exact },
        };
        Ok(())
    }

    /// REQUIRED columns checked, columns put in schema order, the length written.
    pub(super) fn finish(self) -> Done<Outcome> {
        let base = self.plan.slot_base;
        let slots = &self.st.slots[base..base + self.plan.fields.len()];
        for (field, slot) in self.plan.fields.iter().zip(slots) {
            if field.mode == Mode::Required && !matches!(slot, Slot::Written { .. }) {
                return Err(Bail);
            }
        }
        if !self.in_order {
            let written = slots.iter().map(|s| match *s {
                Slot::Written { start, end, .. } => Some((start, end)),
                _ => None,
            });
            put_in_schema_order(written, self.msg_start, &mut self.st.reorder, self.out);
        }
        if let Some(body) = self.body {
            end_len(self.out, body);
        }
        Ok(Outcome::Written)
    }
}

impl ser::SerializeStruct for MessageSer<'_> {
    type Ok = Outcome;
    type Error = Bail;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Done<()> {
        self.entry(key, value)
    }
    fn end(self) -> Done<Outcome> {
        self.finish()
    }
}

impl ser::SerializeMap for MessageSer<'_> {
    type Ok = Outcome;
    type Error = Bail;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Done<()> {
        self.st.key.clear();
        key.serialize(KeySer(&mut self.st.key))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Done<()> {
        let key = std::mem::take(&mut self.st.key);
        let result = self.entry(&key, value);
        self.st.key = key;
        result
    }
    fn end(self) -> Done<Outcome> {
        self.finish()
    }
}

/// The elements of a REPEATED column.
pub(super) struct SeqSer<'a> {
    pub(super) st: &'a mut Scratch,
    pub(super) out: &'a mut Vec<u8>,
    pub(super) field: &'a FieldPlan,
    pub(super) start: usize,
    /// Where the packed run's length goes (numeric columns).
    pub(super) packed: Option<usize>,
    pub(super) count: usize,
}

impl SeqSer<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Done<()> {
        self.count += 1;
        if self.field.field_type == FieldType::Json {
            // A null or an array inside an array is refused.
            return match json_value(value, self.field.tag, self.out)? {
                None | Some(b'[') => Err(Bail),
                Some(_) => Ok(()),
            };
        }
        let target = Target::Element(self.field, self.packed.is_some());
        value.serialize(ValueSer { st: &mut *self.st, out: &mut *self.out, target }).map(|_| ())
    }

    fn finish(self) -> Done<Outcome> {
        if self.count == 0 {
            // An empty array is NULL.
            self.out.truncate(self.start);
            return Ok(Outcome::Null);
        }
        if let Some(body) = self.packed {
            end_len(self.out, body);
        }
        Ok(Outcome::Written)
    }
}

impl ser::SerializeSeq for SeqSer<'_> {
    type Ok = Outcome;
    type Error = Bail;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Done<()> {
        self.element(value)
    }
    fn end(self) -> Done<Outcome> {
        self.finish()
    }
}

impl ser::SerializeTuple for SeqSer<'_> {
    type Ok = Outcome;
    type Error = Bail;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Done<()> {
        self.element(value)
    }
    fn end(self) -> Done<Outcome> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for SeqSer<'_> {
    type Ok = Outcome;
    type Error = Bail;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Done<()> {
        self.element(value)
    }
    fn end(self) -> Done<Outcome> {
        self.finish()
    }
}

/// A map key as serde_json writes it: strings, and integers, bools and unit variants as their
/// text; anything else is left to the transcoder.
pub(super) struct KeySer<'a>(&'a mut String);

impl KeySer<'_> {
    fn text(self, v: impl Display) -> Done<()> {
        write!(self.0, "{v}").map_err(|_| Bail)
    }
}

impl ser::Serializer for KeySer<'_> {
    type Ok = ();
    type Error = Bail;
    type SerializeSeq = Impossible<(), Bail>;
    type SerializeTuple = Impossible<(), Bail>;
    type SerializeTupleStruct = Impossible<(), Bail>;
    type SerializeTupleVariant = Impossible<(), Bail>;
    type SerializeMap = Impossible<(), Bail>;
    type SerializeStruct = Impossible<(), Bail>;
    type SerializeStructVariant = Impossible<(), Bail>;

    fn serialize_bool(self, v: bool) -> Done<()> {
        self.text(v)
    }
    fn serialize_i8(self, v: i8) -> Done<()> {
        self.text(v)
    }
    fn serialize_i16(self, v: i16) -> Done<()> {
        self.text(v)
    }
    fn serialize_i32(self, v: i32) -> Done<()> {
        self.text(v)
    }
    fn serialize_i64(self, v: i64) -> Done<()> {
        self.text(v)
    }
    fn serialize_i128(self, v: i128) -> Done<()> {
        self.text(v)
    }
    fn serialize_u8(self, v: u8) -> Done<()> {
        self.text(v)
    }
    fn serialize_u16(self, v: u16) -> Done<()> {
        self.text(v)
    }
    fn serialize_u32(self, v: u32) -> Done<()> {
        self.text(v)
    }
    fn serialize_u64(self, v: u64) -> Done<()> {
        self.text(v)
    }
    fn serialize_u128(self, v: u128) -> Done<()> {
        self.text(v)
    }
    fn serialize_f32(self, _: f32) -> Done<()> {
        Err(Bail)
    }
    fn serialize_f64(self, _: f64) -> Done<()> {
        Err(Bail)
    }
    fn serialize_char(self, v: char) -> Done<()> {
        self.0.push(v);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Done<()> {
        self.0.push_str(v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Done<()> {
        Err(Bail)
    }
    fn serialize_none(self) -> Done<()> {
        Err(Bail)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Done<()> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Done<()> {
        Err(Bail)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Done<()> {
        Err(Bail)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Done<()> {
        self.0.push_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Done<()> {
        if serde_json_private(name) {
            return Err(Bail);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Done<()> {
        Err(Bail)
    }
    fn serialize_seq(self, _: Option<usize>) -> Done<Self::SerializeSeq> {
        Err(Bail)
    }
    fn serialize_tuple(self, _: usize) -> Done<Self::SerializeTuple> {
        Err(Bail)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Done<Self::SerializeTupleStruct> {
        Err(Bail)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Done<Self::SerializeTupleVariant> {
        Err(Bail)
    }
    fn serialize_map(self, _: Option<usize>) -> Done<Self::SerializeMap> {
        Err(Bail)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Done<Self::SerializeStruct> {
        Err(Bail)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Done<Self::SerializeStructVariant> {
        Err(Bail)
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Done<()> {
        self.text(value)
    }
}
