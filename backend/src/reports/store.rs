//! Report storage: the `reports` table (migration `0002_reports.sql`), the same SQL on
//! SQLite and PostgreSQL. The list query is assembled from fixed fragments; every value is
//! a bound parameter, numbered in the order it is bound.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use crate::db::Db;
use crate::error::ApiError;
use crate::reports::cursor;
use crate::reports::model::{ListQuery, Order, Report, ReportStatus, ValidNewReport};

const COLUMNS: &str = "id, owner_id, title, type, status, payload, error, created_at, updated_at";

/// Stores a new `pending` report and returns it as the API shows it.
pub async fn insert(
    db: &Db,
    id: &str,
    owner_id: &str,
    report: ValidNewReport,
    now: i64,
) -> Result<Report, ApiError> {
    sqlx::query(
        "INSERT INTO reports (id, owner_id, title, type, status, payload, error, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)",
    )
    .bind(id)
    .bind(owner_id)
    .bind(&report.title)
    .bind(&report.kind)
    .bind(ReportStatus::Pending.as_str())
    .bind(&report.payload)
    .bind(now)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(Report {
        id: id.to_owned(),
        owner_id: owner_id.to_owned(),
        title: report.title,
        kind: report.kind,
        status: ReportStatus::Pending,
        payload: serde_json::from_str(&report.payload).map_err(ApiError::internal)?,
        error: None,
        created_at: rfc3339(now)?,
        updated_at: rfc3339(now)?,
    })
}

/// The report `id`, if it exists and (when `owner` is given) belongs to `owner`.
pub async fn find(db: &Db, id: &str, owner: Option<&str>) -> Result<Option<Report>, ApiError> {
    let row = match owner {
        Some(owner) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM reports WHERE id = $1 AND owner_id = $2"
            ))
            .bind(id)
            .bind(owner)
            .fetch_optional(&db.pool)
            .await?
        }
        None => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM reports WHERE id = $1"))
                .bind(id)
                .fetch_optional(&db.pool)
                .await?
        }
    };
    row.as_ref().map(report).transpose()
}

/// Moves report `id` from `from` to `to` only if it is still `from` (the check and the
/// write are one statement, so two racing admins cannot both move it). `false`: it was not.
pub async fn set_status(
    db: &Db,
    id: &str,
    from: ReportStatus,
    to: ReportStatus,
    error: Option<&str>,
    now: i64,
) -> Result<bool, ApiError> {
    let done = sqlx::query(
        "UPDATE reports SET status = $1, error = $2, updated_at = $3 WHERE id = $4 AND status = $5",
    )
    .bind(to.as_str())
    .bind(error.map(str::to_owned))
    .bind(now)
    .bind(id)
    .bind(from.as_str())
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A page of reports (at most `query.limit`) matching `query`, in (created_at, id) order,
/// with the cursor of the next page when there is one.
pub async fn page(db: &Db, query: &ListQuery) -> Result<(Vec<Report>, Option<String>), ApiError> {
    let mut filter = Filter::new(query);
    if let Some(after) = &query.cursor {
        // Strictly after the cursor's (created_at, id) in the sort direction.
        let op = match query.order {
            Order::Asc => ">",
            Order::Desc => "<",
        };
        let at1 = filter.bind(Arg::Int(after.created_at));
        let at2 = filter.bind(Arg::Int(after.created_at));
        let id = filter.bind(Arg::Text(after.id.clone()));
        filter.conditions.push(format!(
            "(created_at {op} {at1} OR (created_at = {at2} AND id {op} {id}))"
        ));
    }
    let direction = match query.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    // One more than asked: whether a next page exists, without a second query.
    let limit = filter.bind(Arg::Int(i64::from(query.limit) + 1));
    let sql = format!(
        "SELECT {COLUMNS} FROM reports{} ORDER BY created_at {direction}, id {direction} LIMIT {limit}",
        filter.where_clause()
    );
    let rows = filter.apply(sqlx::query(&sql)).fetch_all(&db.pool).await?;
    let wanted = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let more = rows.len() > wanted;
    let mut items = Vec::with_capacity(rows.len().min(wanted));
    let mut last = None;
    for row in rows.iter().take(wanted) {
        last = Some((
            row.try_get::<i64, _>("created_at")?,
            row.try_get::<String, _>("id")?,
        ));
        items.push(report(row)?);
    }
    let next = match (more, last) {
        (true, Some((created_at, id))) => Some(cursor::encode(query.order, created_at, &id)),
        _ => None,
    };
    Ok((items, next))
}

/// How many reports match `query`'s filters, ignoring its cursor and limit.
pub async fn count(db: &Db, query: &ListQuery) -> Result<i64, ApiError> {
    let filter = Filter::new(query);
    let sql = format!("SELECT COUNT(*) AS n FROM reports{}", filter.where_clause());
    let row = filter.apply(sqlx::query(&sql)).fetch_one(&db.pool).await?;
    Ok(row.try_get::<i64, _>("n")?)
}

/// A value to bind.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

/// `WHERE` conditions with their values, placeholders numbered as values are added.
#[derive(Debug)]
struct Filter {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    /// The filters of `query` (not its cursor): owner, status, type, creation interval.
    fn new(query: &ListQuery) -> Filter {
        let mut filter = Filter {
            conditions: Vec::new(),
            args: Vec::new(),
        };
        if let Some(owner) = &query.owner {
            let p = filter.bind(Arg::Text(owner.clone()));
            filter.conditions.push(format!("owner_id = {p}"));
        }
        if let Some(status) = query.status {
            let p = filter.bind(Arg::Text(status.as_str().to_owned()));
            filter.conditions.push(format!("status = {p}"));
        }
        if let Some(kind) = &query.kind {
            let p = filter.bind(Arg::Text(kind.clone()));
            filter.conditions.push(format!("type = {p}"));
        }
        if let Some(from) = query.created_from {
            let p = filter.bind(Arg::Int(from));
            filter.conditions.push(format!("created_at >= {p}"));
        }
        if let Some(to) = query.created_to {
            let p = filter.bind(Arg::Int(to));
            filter.conditions.push(format!("created_at < {p}"));
        }
        filter
    }

    /// Adds a value; returns its placeholder (`$1`, `$2`…).
    fn bind(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// Binds the values, in placeholder order.
    fn apply<'q>(
        &self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for arg in &self.args {
            query = match arg {
                Arg::Text(text) => query.bind(text.clone()),
                Arg::Int(int) => query.bind(*int),
            };
        }
        query
    }
}

/// A row as the API shows it.
fn report(row: &AnyRow) -> Result<Report, ApiError> {
    let status: String = row.try_get("status")?;
    let payload: String = row.try_get("payload")?;
    Ok(Report {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        title: row.try_get("title")?,
        kind: row.try_get("type")?,
        status: ReportStatus::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("reports: unknown status {status:?}")))?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| ApiError::internal(format!("reports: stored payload: {e}")))?,
        error: row.try_get("error")?,
        created_at: rfc3339(row.try_get("created_at")?)?,
        updated_at: rfc3339(row.try_get("updated_at")?)?,
    })
}

/// Unix microseconds as RFC 3339 UTC.
fn rfc3339(micros: i64) -> Result<String, ApiError> {
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.to_string())
        .map_err(|e| ApiError::internal(format!("reports: stored time {micros}: {e}")))
}
