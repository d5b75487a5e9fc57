//! MariaDB's compressed binlog events (`log_bin_compress = ON`): QUERY_COMPRESSED (165) and the
//! compressed row events (166-168 version 1, 169-171 version 2). mysql_common does not know
//! them; here each is rebuilt as the plain event it stands for, so it decodes like any other.
//!
//! Only part of such an event is compressed: a query event's statement text, a row event's rows
//! (after the table id, flags, column count and column bitmaps). The compressed part is one
//! header byte `0x80 | n` (n = 1..=4), the uncompressed size in n big-endian bytes, then zlib.

use std::io::Read;

use mysql_async::binlog::events::{BinlogEventHeader, Event};
use mysql_async::binlog::EventType;

/// MariaDB's QUERY_COMPRESSED_EVENT.
pub const QUERY_COMPRESSED: u8 = 165;

/// Largest uncompressed size accepted (MariaDB's max_allowed_packet ceiling).
const MAX_SIZE: usize = 1 << 30;

/// The plain event type a compressed one stands for; `None` for every other type.
pub fn plain_type(compressed: u8) -> Option<EventType> {
    Some(match compressed {
        QUERY_COMPRESSED => EventType::QUERY_EVENT,
        166 => EventType::WRITE_ROWS_EVENT_V1,
        167 => EventType::UPDATE_ROWS_EVENT_V1,
        168 => EventType::DELETE_ROWS_EVENT_V1,
        169 => EventType::WRITE_ROWS_EVENT,
        170 => EventType::UPDATE_ROWS_EVENT,
        171 => EventType::DELETE_ROWS_EVENT,
        _ => return None,
    })
}

/// Inflates one compressed part (header byte, big-endian size, zlib data).
pub fn inflate(part: &[u8]) -> Result<Vec<u8>, String> {
    let (&head, rest) = part.split_first().ok_or("empty compressed part")?;
    let n = usize::from(head & 0x07);
    if head & 0xe0 != 0x80 || !(1..=4).contains(&n) || rest.len() < n {
        return Err(format!("unknown compression header byte {head:#04x}"));
    }
    let size = rest[..n]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    if size > MAX_SIZE {
        return Err(format!("uncompressed size {size} is too large"));
    }
    let mut out = Vec::with_capacity(size);
    flate2::read::ZlibDecoder::new(&rest[n..])
        .take(size as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zlib: {e}"))?;
    if out.len() != size {
        return Err(format!(
            "inflated to {} bytes, the header says {size}",
            out.len()
        ));
    }
    Ok(out)
}

/// Where the compressed part of a QUERY_COMPRESSED body starts: after the post-header
/// (`post_header` bytes; status-vars length at 11..13, schema length at 8), the status vars and
/// the schema name with its NUL.
fn query_split(body: &[u8], post_header: usize) -> Option<usize> {
    let schema_len = usize::from(*body.get(8)?);
    let vars_len = usize::from(u16::from_le_bytes([*body.get(11)?, *body.get(12)?]));
    let at = post_header + vars_len + schema_len + 1;
    (at <= body.len()).then_some(at)
}

/// Where the compressed rows of a row event body start: after the post-header (with version
/// 2's extra data), the length-encoded column count and one bitmap (two for updates).
fn rows_split(body: &[u8], post_header: usize, plain: EventType) -> Option<usize> {
    let mut at = post_header;
    if matches!(
        plain,
        EventType::WRITE_ROWS_EVENT | EventType::UPDATE_ROWS_EVENT | EventType::DELETE_ROWS_EVENT
    ) && post_header >= 10
    {
        // Version 2: extra data length (itself included) at 8..10, inside the post-header.
        let extra = usize::from(u16::from_le_bytes([*body.get(8)?, *body.get(9)?]));
        at += extra.saturating_sub(2);
    }
    let (columns, width) = lenenc(body.get(at..)?)?;
    at += width;
    let bitmap = usize::try_from(columns.div_ceil(8)).ok()?;
    let bitmaps = match plain {
        EventType::UPDATE_ROWS_EVENT_V1 | EventType::UPDATE_ROWS_EVENT => 2,
        _ => 1,
    };
    at += bitmap * bitmaps;
    (at <= body.len()).then_some(at)
}

/// A length-encoded integer and how many bytes it took.
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let width = match *b.first()? {
        x @ 0..=0xfa => return Some((u64::from(x), 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = b.get(1..=width)?;
    let value = bytes
        .iter()
        .rev()
        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    Some((value, width + 1))
}

/// The body of the plain event a compressed one stands for: the uncompressed prefix and the
/// inflated rest. `post_header` is the plain type's post-header length (from the FDE).
pub fn plain_body(body: &[u8], plain: EventType, post_header: usize) -> Result<Vec<u8>, String> {
    let split = if plain == EventType::QUERY_EVENT {
        query_split(body, post_header)
    } else {
        rows_split(body, post_header, plain)
    }
    .ok_or("truncated compressed event")?;
    let mut out = body[..split].to_vec();
    out.extend(inflate(&body[split..])?);
    Ok(out)
}

/// The plain event for a compressed one (`Ok(None)` when `event` is not compressed). The
/// rebuilt event keeps the header's timestamp, server id, end position and flags.
pub fn decompress(event: &Event) -> Result<Option<Event>, String> {
    let header = event.header();
    let Some(plain) = plain_type(header.event_type_raw()) else {
        return Ok(None);
    };
    let fde = event.fde();
    let post_header = usize::from(fde.get_event_type_header_length(plain));
    let body = plain_body(event.data(), plain, post_header)?;
    // What followed the body on the wire (the checksum), so the FDE's footer rules still apply;
    // the checksum is not verified again.
    let trailer =
        (header.event_size() as usize).saturating_sub(BinlogEventHeader::LEN + event.data().len());
    let size = BinlogEventHeader::LEN + body.len() + trailer;
    let size = u32::try_from(size).map_err(|_| "inflated event too large".to_string())?;
    let mut raw = Vec::with_capacity(size as usize);
    raw.extend_from_slice(&header.timestamp().to_le_bytes());
    raw.push(plain as u8);
    raw.extend_from_slice(&header.server_id().to_le_bytes());
    raw.extend_from_slice(&size.to_le_bytes());
    raw.extend_from_slice(&header.log_pos().to_le_bytes());
    raw.extend_from_slice(&header.flags_raw().to_le_bytes());
    raw.extend_from_slice(&body);
    raw.resize(size as usize, 0);
    Event::read(fde, &raw[..])
        .map(Some)
        .map_err(|e| format!("rebuilt event: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn compress(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).unwrap();
        let zipped = z.finish().unwrap();
        let size = u16::try_from(data.len()).unwrap().to_be_bytes();
        let mut out = vec![0x82, size[0], size[1]];
        out.extend(zipped);
        out
    }

    #[test]
    fn inflates_what_mariadb_wrote() {
        // A WRITE_ROWS_COMPRESSED_V1 body from MariaDB 10.11: table 18, flags 1, 2 columns,
        // bitmap 0x03, then the rows (106 bytes) compressed.
        let body = [
            0x12, 0, 0, 0, 0, 0, 0x01, 0, 0x02, 0x03, 0x81, 0x6a, 0x78, 0x9c, 0xfb, 0xc3, 0xc8,
            0xc0, 0xc0, 0x90, 0x52, 0x41, 0x07, 0x00, 0x00, 0xd0, 0x56, 0x30, 0x42,
        ];
        let plain = plain_body(&body, EventType::WRITE_ROWS_EVENT_V1, 8).unwrap();
        assert_eq!(&plain[..10], &body[..10]);
        assert_eq!(plain.len(), 10 + 106);
        assert_eq!(&plain[10..16], &[0xfc, 0x01, 0, 0, 0, 0x64]);
        assert!(plain[16..].iter().all(|b| *b == b'x'));
    }

    #[test]
    fn query_text_is_inflated_after_vars_and_schema() {
        let sql = b"UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = 1";
        let mut body = vec![0u8; 13];
        body[8] = 2; // schema "db"
        body[11] = 3; // 3 bytes of status vars
        body.extend_from_slice(&[9, 9, 9]);
        body.extend_from_slice(b"db\0");
        let prefix = body.len();
        body.extend(compress(sql));
        let plain = plain_body(&body, EventType::QUERY_EVENT, 13).unwrap();
        assert_eq!(&plain[..prefix], &body[..prefix]);
        assert_eq!(&plain[prefix..], sql);
    }

    #[test]
    fn update_rows_skip_both_bitmaps_and_v2_extra_data() {
        let rows = vec![7u8; 300];
        let mut v1 = vec![1, 0, 0, 0, 0, 0, 0, 0, 9, 0xff, 0x01, 0xff, 0x01];
        v1.extend(compress(&rows));
        let plain = plain_body(&v1, EventType::UPDATE_ROWS_EVENT_V1, 8).unwrap();
        assert_eq!(&plain[13..], &rows[..]);
        let mut v2 = vec![1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0xaa, 0xbb, 2, 0x03];
        v2.extend(compress(&rows));
        let plain = plain_body(&v2, EventType::WRITE_ROWS_EVENT, 10).unwrap();
        assert_eq!(&plain[14..], &rows[..]);
    }

    #[test]
    fn bad_headers_and_sizes_are_errors() {
        assert!(inflate(&[]).is_err());
        assert!(inflate(&[0x05, 1, 2]).is_err());
        let mut lying = compress(b"abc");
        lying[2] = 9;
        assert!(inflate(&lying).unwrap_err().contains("header says 9"));
        assert!(plain_type(2).is_none());
        assert_eq!(plain_type(167), Some(EventType::UPDATE_ROWS_EVENT_V1));
    }
}
