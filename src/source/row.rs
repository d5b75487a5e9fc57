//! A changed STATUS_PROCESS row as the binlog decodes it: what kind of change and the before /
//! after images by column name. The binlog source produces these; only the pipeline
//! (`crate::pipeline::alarm_raised`) says what one means.

use mysql_async::Value;

/// What kind of row event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Insert,
    Update,
    Delete,
}

/// The columns a row image holds (all of them with FULL images; with MINIMAL only some),
/// by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowImage {
    pub columns: Vec<(String, Value)>,
}

impl RowImage {
    /// The value of a column, when the image has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.columns
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A column's value as an integer, when the image has it and it is one.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }
}

/// One row changed in a followed table (STATUS_PROCESS, or PROCESE for host scoping).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub kind: RowKind,
    pub before: Option<RowImage>,
    pub after: Option<RowImage>,
}

impl RowChange {
    pub fn new(kind: RowKind, before: Option<RowImage>, after: Option<RowImage>) -> RowChange {
        RowChange {
            kind,
            before,
            after,
        }
    }
}

/// What a change means to whoever follows the table: the id of a process to look at, or
/// nothing. The binlog source is given one (the pipeline's) and never decides itself.
pub type Meaning = fn(&RowChange) -> Option<i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_image_reads_integers_of_any_representation() {
        let img = RowImage {
            columns: vec![
                ("process_id".into(), Value::Int(7)),
                ("alarma".into(), Value::UInt(1)),
                ("notes".into(), Value::Bytes(b"12".to_vec())),
                ("sound".into(), Value::NULL),
            ],
        };
        assert_eq!(img.int("PROCESS_ID"), Some(7));
        assert_eq!(img.int("alarma"), Some(1));
        assert_eq!(img.int("notes"), Some(12));
        assert_eq!(img.int("sound"), None);
        assert_eq!(img.int("missing"), None);
    }
}
