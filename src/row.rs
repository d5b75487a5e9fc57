//! The vocabulary between the binlog decoder and the parts that give rows a meaning: a changed
//! row (STATUS_PROCESS, or PROCESE for host scoping) with its before / after images by column
//! name, the [`Meaning`] the pipeline gives STATUS_PROCESS changes
//! (`crate::pipeline::alarm_raised`) and the [`ProceseSink`] host scoping gives PROCESE's.
//! The decoder produces these and never decides what one means.

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

/// The pipeline side's view of PROCESE (host scoping): the stream hands it PROCESE's row
/// changes and DDL in log order, and asks it whether an alarm raised for a process is this
/// daemon's before sending the trigger.
pub trait ProceseSink: Send + Sync {
    /// A PROCESE row changed.
    fn changed(&self, change: &RowChange);
    /// PROCESE's definition (or rows, logged as SQL text) changed: read it again.
    fn redefined(&self);
    /// Whether an alarm raised for `process_id` is this daemon's to handle.
    fn wants(&self, process_id: i64) -> bool;
}

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
