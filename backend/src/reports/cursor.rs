//! The opaque `next_cursor` of `GET /api/reports`: the (created_at, id) of the last item
//! of a page — keyset pagination, so equal timestamps never skip or repeat items — bound to
//! the sort it came from, with a checksum so a damaged or edited cursor is refused instead
//! of silently paging from elsewhere.
//!
//! Format, before base64url (no padding): `v1.created_at.<order>.<micros>.<id>.<fnv1a64 hex>`.
//! The checksum is integrity, not secrecy: a cursor only names a position, and the list
//! query still applies the caller's visibility, so a forged one reveals nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::reports::model::Order;

const VERSION: &str = "v1";
const SORT: &str = "created_at";

/// A position in the list: the last item of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

/// The cursor after the item (`created_at`, `id`) for a list sorted by `order`.
pub fn encode(order: Order, created_at: i64, id: &str) -> String {
    let body = format!("{VERSION}.{SORT}.{}.{created_at}.{id}", order.as_str());
    let text = format!("{body}.{:016x}", checksum(&body));
    URL_SAFE_NO_PAD.encode(text)
}

/// Reads a cursor for a list sorted by `order` (`None`: the order was itself invalid, so
/// only the cursor's integrity is checked). The error is the message for the `cursor` field.
pub fn decode(cursor: &str, order: Option<Order>) -> Result<Cursor, String> {
    let damaged = || "is not a cursor this service returned (damaged or edited)".to_owned();
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| damaged())?;
    let text = String::from_utf8(bytes).map_err(|_| damaged())?;
    let (body, sum) = text.rsplit_once('.').ok_or_else(damaged)?;
    if sum != format!("{:016x}", checksum(body)) {
        return Err(damaged());
    }
    let mut parts = body.splitn(5, '.');
    let (Some(VERSION), Some(SORT), Some(cursor_order), Some(micros), Some(id)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(damaged());
    };
    let cursor_order = Order::parse(cursor_order).ok_or_else(damaged)?;
    let created_at = micros.parse::<i64>().map_err(|_| damaged())?;
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(damaged());
    }
    if let Some(order) = order {
        if order != cursor_order {
            return Err(format!(
                "belongs to a list sorted with order={}; ask with the same order, or start again without a cursor",
                cursor_order.as_str()
            ));
        }
    }
    Ok(Cursor {
        created_at,
        id: id.to_owned(),
    })
}

/// FNV-1a, 64 bits: small, stable across releases and platforms (unlike `DefaultHasher`).
fn checksum(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f1c1c52-8d3e-4a43-9a55-0a4f5f2d9b1e";

    #[test]
    fn round_trips_in_its_order_only() {
        let cursor = encode(Order::Asc, 1_700_000_000_000_000, ID);
        assert_eq!(
            decode(&cursor, Some(Order::Asc)),
            Ok(Cursor {
                created_at: 1_700_000_000_000_000,
                id: ID.to_owned()
            })
        );
        assert!(decode(&cursor, Some(Order::Desc))
            .expect_err("other order")
            .contains("order=asc"));
    }

    #[test]
    fn refuses_edits_and_garbage() {
        let cursor = encode(Order::Desc, -5, ID);
        let text =
            String::from_utf8(URL_SAFE_NO_PAD.decode(&cursor).expect("base64")).expect("utf8");
        let edited = URL_SAFE_NO_PAD.encode(text.replace(".-5.", ".-4."));
        assert!(decode(&edited, Some(Order::Desc)).is_err());
        assert!(decode("not a cursor!", Some(Order::Desc)).is_err());
        assert!(decode("", Some(Order::Desc)).is_err());
        assert!(decode(&URL_SAFE_NO_PAD.encode("v1.x"), None).is_err());
    }
}
