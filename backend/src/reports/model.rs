//! The reports API's types: what clients send (validated here, every problem named by its
//! field or query parameter) and what they get back.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorCode, FieldError};
use crate::reports::cursor::{self, Cursor};

/// Longest title, in characters (Unicode scalar values, as JSON Schema counts them).
pub const TITLE_MAX: usize = 200;
/// Largest payload, serialized as compact JSON, in bytes.
pub const PAYLOAD_MAX: usize = 256 * 1024;
/// Longest `type`, in characters; the alphabet is `[a-z0-9_-]`.
pub const TYPE_MAX: usize = 64;
/// Longest `error` of a failed report, in characters.
pub const ERROR_MAX: usize = 2000;
/// Page size when `limit` is not given, and the largest one allowed.
pub const LIMIT_DEFAULT: u32 = 20;
pub const LIMIT_MAX: u32 = 100;

/// Where a report is in its life: `pending → processing → ready | failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Pending,
    Processing,
    Ready,
    Failed,
}

impl ReportStatus {
    pub const ALL: [ReportStatus; 4] = [
        ReportStatus::Pending,
        ReportStatus::Processing,
        ReportStatus::Ready,
        ReportStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Pending => "pending",
            ReportStatus::Processing => "processing",
            ReportStatus::Ready => "ready",
            ReportStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<ReportStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The only moves allowed: `pending → processing`, `processing → ready | failed`.
    pub fn can_become(self, next: ReportStatus) -> bool {
        matches!(
            (self, next),
            (ReportStatus::Pending, ReportStatus::Processing)
                | (ReportStatus::Processing, ReportStatus::Ready)
                | (ReportStatus::Processing, ReportStatus::Failed)
        )
    }
}

/// A report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    /// The report's id (UUID v4, lowercase, hyphenated).
    #[schema(format = "uuid")]
    pub id: String,
    /// The user who created it.
    pub owner_id: String,
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// A short identifier of the kind of report.
    #[serde(rename = "type")]
    #[schema(pattern = r"^[a-z0-9_-]{1,64}$")]
    pub kind: String,
    pub status: ReportStatus,
    /// The JSON value given at creation (object keys may come back in another order).
    pub payload: Value,
    /// Why the report failed: `null` unless `status` is `failed` (and may be `null` then).
    #[schema(required = true, max_length = 2000)]
    pub error: Option<String>,
    /// Creation time, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Time of the last status change (the creation time until then), RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// The body of `POST /api/reports`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReport {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// A short identifier: 1–64 of `a-z`, `0-9`, `_`, `-`.
    #[serde(rename = "type")]
    #[schema(pattern = r"^[a-z0-9_-]{1,64}$")]
    pub kind: String,
    /// Any JSON value (`null` included); at most 256 KiB once serialized as compact JSON,
    /// else `413 payload_too_large` naming `payload`.
    pub payload: Value,
}

/// A [`NewReport`] that passed validation, its payload serialized for storage.
#[derive(Debug, Clone)]
pub struct ValidNewReport {
    pub title: String,
    pub kind: String,
    pub payload: String,
}

impl NewReport {
    /// Shape errors are `400 validation_failed` naming every bad field; an oversized payload
    /// is `413 payload_too_large` naming `payload` (the same code as an oversized body).
    pub fn validate(self) -> Result<ValidNewReport, ApiError> {
        let mut fields = Vec::new();
        let title_len = self.title.chars().count();
        if title_len == 0 || title_len > TITLE_MAX {
            fields.push(field(
                "title",
                format!("must be 1 to {TITLE_MAX} characters"),
            ));
        }
        if !is_type(&self.kind) {
            fields.push(field("type", type_message()));
        }
        if !fields.is_empty() {
            return Err(ApiError::fields(fields));
        }
        let payload = serde_json::to_string(&self.payload).map_err(ApiError::internal)?;
        if payload.len() > PAYLOAD_MAX {
            let mut error = ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("`payload` is larger than {PAYLOAD_MAX} bytes once serialized"),
            );
            error.fields = vec![field(
                "payload",
                format!(
                    "is {} bytes serialized; at most {PAYLOAD_MAX}",
                    payload.len()
                ),
            )];
            return Err(error);
        }
        Ok(ValidNewReport {
            title: self.title,
            kind: self.kind,
            payload,
        })
    }
}

/// The status a `PATCH` moves a report to (`pending` is only ever the first status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    Processing,
    Ready,
    Failed,
}

impl From<TargetStatus> for ReportStatus {
    fn from(target: TargetStatus) -> ReportStatus {
        match target {
            TargetStatus::Processing => ReportStatus::Processing,
            TargetStatus::Ready => ReportStatus::Ready,
            TargetStatus::Failed => ReportStatus::Failed,
        }
    }
}

/// The body of `PATCH /api/reports/{id}` (admins only).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// Allowed moves: `pending → processing`, `processing → ready`, `processing → failed`.
    pub status: TargetStatus,
    /// Why the report failed; only with `status: failed` (else `400` naming `error`).
    #[schema(min_length = 1, max_length = 2000)]
    pub error: Option<String>,
}

impl StatusChange {
    /// The new status and the error to store with it.
    pub fn validate(self) -> Result<(ReportStatus, Option<String>), ApiError> {
        if let Some(error) = &self.error {
            if self.status != TargetStatus::Failed {
                return Err(ApiError::field(
                    "error",
                    "only a report moving to `failed` takes an `error`",
                ));
            }
            let len = error.chars().count();
            if len == 0 || len > ERROR_MAX {
                return Err(ApiError::field(
                    "error",
                    format!("must be 1 to {ERROR_MAX} characters"),
                ));
            }
        }
        Ok((self.status.into(), self.error))
    }
}

/// A page of `GET /api/reports`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportPage {
    pub items: Vec<Report>,
    /// Pass as `cursor` (with the same `order`) for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// How many reports match the filters, ignoring pagination; only with `include_total=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0)]
    pub total: Option<i64>,
}

/// The only sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
pub enum SortField {
    #[serde(rename = "created_at")]
    CreatedAt,
}

/// Direction of the `created_at` sort (ties broken by `id` in the same direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }

    pub fn parse(text: &str) -> Option<Order> {
        match text {
            "asc" => Some(Order::Asc),
            "desc" => Some(Order::Desc),
            _ => None,
        }
    }
}

/// The query parameters of `GET /api/reports`, as documented. Unknown parameters, repeated
/// parameters and bad values are `400 validation_failed` naming the parameter; the handler
/// validates the raw pairs with [`ListQuery::parse`] so it can say exactly which.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documentation only: the values are read by `ListQuery::parse`
pub struct ListParams {
    /// Only reports with this status.
    #[param(inline)]
    status: Option<ReportStatus>,
    /// Only reports of this type.
    #[serde(rename = "type")]
    #[param(pattern = r"^[a-z0-9_-]{1,64}$")]
    kind: Option<String>,
    /// Admins only: only this user's reports (`400` naming `owner` for other callers).
    #[param(min_length = 1)]
    owner: Option<String>,
    /// Only reports created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_from: Option<String>,
    /// Only reports created before this time (RFC 3339); not before `created_from`.
    #[param(value_type = Option<String>, format = DateTime)]
    created_to: Option<String>,
    /// The sort key; `created_at` is the only one.
    #[param(inline)]
    sort: Option<SortField>,
    /// `desc` (newest first, the default) or `asc`.
    #[param(inline)]
    order: Option<Order>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page, asked with the same `order`.
    cursor: Option<String>,
    /// `true` adds `total`: how many reports match the filters, ignoring pagination.
    #[param(default = false)]
    include_total: Option<bool>,
}

/// `GET /api/reports`, validated.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub status: Option<ReportStatus>,
    pub kind: Option<String>,
    pub owner: Option<String>,
    /// Inclusive lower bound, Unix microseconds.
    pub created_from: Option<i64>,
    /// Exclusive upper bound, Unix microseconds.
    pub created_to: Option<i64>,
    pub order: Order,
    pub limit: u32,
    pub cursor: Option<Cursor>,
    pub include_total: bool,
}

const PARAMETERS: [&str; 10] = [
    "status",
    "type",
    "owner",
    "created_from",
    "created_to",
    "sort",
    "order",
    "limit",
    "cursor",
    "include_total",
];

impl ListQuery {
    /// Validates the raw query pairs; `owner` is only a parameter for admins. Every problem
    /// is reported at once, each naming its parameter.
    pub fn parse(pairs: Vec<(String, String)>, is_admin: bool) -> Result<ListQuery, ApiError> {
        let mut errors = Vec::new();
        let mut given: BTreeMap<String, String> = BTreeMap::new();
        let mut repeated: BTreeSet<String> = BTreeSet::new();
        for (name, value) in pairs {
            if !PARAMETERS.contains(&name.as_str()) {
                errors.push(field(
                    &name,
                    format!("unknown parameter; known: {}", PARAMETERS.join(", ")),
                ));
            } else if let Entry::Vacant(entry) = given.entry(name.clone()) {
                entry.insert(value);
            } else {
                repeated.insert(name);
            }
        }
        // A repeated parameter is one error, and its values are not judged further.
        for name in repeated {
            given.remove(&name);
            errors.push(field(&name, "given more than once"));
        }
        let get = |name: &str| given.get(name).map(String::as_str);

        let status = get("status").and_then(|v| {
            let parsed = ReportStatus::parse(v);
            if parsed.is_none() {
                errors.push(field(
                    "status",
                    "must be one of pending, processing, ready, failed",
                ));
            }
            parsed
        });
        let kind = get("type").and_then(|v| {
            if is_type(v) {
                Some(v.to_owned())
            } else {
                errors.push(field("type", type_message()));
                None
            }
        });
        let owner = get("owner").and_then(|v| {
            if !is_admin {
                errors.push(field("owner", "only admins may filter by owner"));
                None
            } else if v.is_empty() {
                errors.push(field("owner", "must not be empty"));
                None
            } else {
                Some(v.to_owned())
            }
        });
        let created_from = get("created_from").and_then(|v| time(v, "created_from", &mut errors));
        let created_to = get("created_to").and_then(|v| time(v, "created_to", &mut errors));
        if let (Some(from), Some(to)) = (created_from, created_to) {
            if from > to {
                errors.push(field("created_from", "must not be after created_to"));
            }
        }
        if let Some(sort) = get("sort") {
            if sort != "created_at" {
                errors.push(field("sort", "must be created_at"));
            }
        }
        let order = match get("order") {
            None => Some(Order::Desc),
            Some(v) => {
                let parsed = Order::parse(v);
                if parsed.is_none() {
                    errors.push(field("order", "must be asc or desc"));
                }
                parsed
            }
        };
        let limit = match get("limit") {
            None => LIMIT_DEFAULT,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=LIMIT_MAX).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    errors.push(field(
                        "limit",
                        format!("must be an integer from 1 to {LIMIT_MAX}"),
                    ));
                    LIMIT_DEFAULT
                }
            },
        };
        let cursor = get("cursor").and_then(|v| match cursor::decode(v, order) {
            Ok(c) => Some(c),
            Err(message) => {
                errors.push(field("cursor", message));
                None
            }
        });
        let include_total = match get("include_total") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                errors.push(field("include_total", "must be true or false"));
                false
            }
        };
        if !errors.is_empty() {
            return Err(ApiError::fields(errors));
        }
        Ok(ListQuery {
            status,
            kind,
            owner,
            created_from,
            created_to,
            order: order.unwrap_or(Order::Desc),
            limit,
            cursor,
            include_total,
        })
    }
}

/// An RFC 3339 time as Unix microseconds, rounded up: for an integer `t`, `t >= x` iff
/// `t >= ceil(x)` and `t < x` iff `t < ceil(x)`, so both bounds stay exact.
fn time(text: &str, name: &str, errors: &mut Vec<FieldError>) -> Option<i64> {
    let parsed = text.parse::<jiff::Timestamp>().ok().and_then(|t| {
        let nanos = t.as_nanosecond();
        let micros = nanos.div_euclid(1000) + i128::from(nanos.rem_euclid(1000) > 0);
        i64::try_from(micros).ok()
    });
    if parsed.is_none() {
        errors.push(field(
            name,
            "must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z",
        ));
    }
    parsed
}

/// `[a-z0-9_-]{1,64}`.
fn is_type(text: &str) -> bool {
    (1..=TYPE_MAX).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn type_message() -> String {
    format!("must be 1 to {TYPE_MAX} of a-z, 0-9, _ and -")
}

fn field(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> Option<i64> {
        let mut errors = Vec::new();
        let parsed = time(text, "t", &mut errors);
        assert_eq!(parsed.is_none(), errors.len() == 1, "{text}");
        parsed
    }

    #[test]
    fn reads_rfc3339_times() {
        let base = Some(1_700_000_000_000_000);
        assert_eq!(micros("2023-11-14T22:13:20Z"), base);
        assert_eq!(micros("2023-11-14t22:13:20z"), base);
        assert_eq!(micros("2023-11-14T23:13:20+01:00"), base);
        assert_eq!(micros("2023-11-14T22:13:20.000001Z"), base.map(|b| b + 1));
        assert_eq!(micros("2023-11-14T22:13:19.999999001Z"), base);
        assert_eq!(micros("1969-12-31T23:59:59.9999995Z"), Some(0));
        assert!(micros("1990-12-31T23:59:60Z").is_some(), "a leap second");
        assert_eq!(micros("2023-11-14"), None);
        assert_eq!(micros("now"), None);
        assert_eq!(micros(""), None);
    }

    #[test]
    fn the_status_machine() {
        use ReportStatus::*;
        let allowed: Vec<(ReportStatus, ReportStatus)> = ReportStatus::ALL
            .into_iter()
            .flat_map(|from| ReportStatus::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| from.can_become(*to))
            .collect();
        assert_eq!(
            allowed,
            [
                (Pending, Processing),
                (Processing, Ready),
                (Processing, Failed)
            ]
        );
    }
}
