//! Reports on SQLite and PostgreSQL: create and read, ownership (another user's report is a
//! 404, never a 403), the admin's view, every list filter, both sort orders, keyset
//! pagination over equal timestamps, totals, parameter validation, the payload limit, the
//! status machine and its atomicity, and identity.

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::*;

/// 2023-11-14T22:13:20Z in Unix microseconds: the base of rows inserted with set times.
const BASE: i64 = 1_700_000_000_000_000;
const PAYLOAD_MAX: usize = 256 * 1024;

/// Creates a report as `user`; returns its JSON.
async fn create(app: &TestApp, user: &str, title: &str, kind: &str) -> Value {
    let answer = app
        .post("/api/reports")
        .user(user)
        .json(&json!({ "title": title, "type": kind, "payload": { "n": 1 } }))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    answer.json
}

/// Inserts a report row directly, with a chosen `created_at` (to test ties and bounds).
async fn insert_row(
    app: &TestApp,
    owner: &str,
    kind: &str,
    status: &str,
    created_at: i64,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO reports (id, owner_id, title, type, status, payload, error, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)",
    )
    .bind(&id)
    .bind(owner)
    .bind(format!("report of {owner}"))
    .bind(kind)
    .bind(status)
    .bind(r#"{"rows":[1,2,3]}"#)
    .bind(created_at)
    .bind(created_at)
    .execute(&app.db.db.pool)
    .await
    .expect("insert report row");
    id
}

fn ids(answer: &Answer) -> Vec<String> {
    answer.json["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {}", answer.json))
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The ids of `rows` (created_at, id) in the list's order.
fn sorted(mut rows: Vec<(i64, String)>, desc: bool) -> Vec<String> {
    rows.sort();
    if desc {
        rows.reverse();
    }
    rows.into_iter().map(|(_, id)| id).collect()
}

fn time(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .expect("time")
        .to_string()
}

/// Asserts `400 validation_failed` naming exactly `fields`.
fn assert_invalid(answer: &Answer, fields: &[&str]) {
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
    assert_eq!(answer.error_code(), "validation_failed");
    assert_eq!(answer.field_paths(), fields, "{}", answer.json);
}

both_databases!(creates_then_gets_a_report, |app| async move {
    let payload = json!({ "rows": [1, 2.5, "x", null, true], "nested": { "a": { "b": [] } } });
    let answer = app
        .post("/api/reports")
        .user("alice")
        .json(&json!({ "title": "Monthly sales", "type": "sales_monthly-2", "payload": payload }))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    let report = answer.json.clone();
    let id = report["id"].as_str().expect("id").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(
        answer.header("location").as_deref(),
        Some(format!("/api/reports/{id}").as_str())
    );
    assert_eq!(report["owner_id"], "alice");
    assert_eq!(report["title"], "Monthly sales");
    assert_eq!(report["type"], "sales_monthly-2");
    assert_eq!(report["status"], "pending");
    assert_eq!(report["payload"], payload);
    assert_eq!(report["error"], Value::Null);
    assert!(report.as_object().expect("object").contains_key("error"));
    let created = report["created_at"].as_str().expect("created_at");
    assert!(created.ends_with('Z'), "{created}");
    created.parse::<jiff::Timestamp>().expect("RFC 3339");
    assert_eq!(report["updated_at"], report["created_at"]);
    assert_eq!(report.as_object().expect("object").len(), 9, "{report}");

    let got = app
        .get(&format!("/api/reports/{id}"))
        .user("alice")
        .send()
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.json);
    assert_eq!(got.json, report);

    // Any JSON value is a payload, `null` included.
    for payload in [json!(null), json!(42), json!("text"), json!([])] {
        let answer = app
            .post("/api/reports")
            .user("alice")
            .json(&json!({ "title": "t", "type": "t", "payload": payload }))
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
        assert_eq!(answer.json["payload"], payload);
    }
    app.finish().await;
});

both_databases!(create_validates_its_body, |app| async move {
    let post = |body: Value| app.post("/api/reports").user("alice").json(&body).send();

    let ok = post(json!({ "title": "é".repeat(200), "type": "a".repeat(64), "payload": {} })).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.json);

    let answer = post(json!({ "title": "", "type": "x", "payload": {} })).await;
    assert_invalid(&answer, &["title"]);
    let answer = post(json!({ "title": "a".repeat(201), "type": "x", "payload": {} })).await;
    assert_invalid(&answer, &["title"]);
    let long = "a".repeat(65);
    for kind in ["", "Sales", "with space", "é", long.as_str()] {
        let answer = post(json!({ "title": "t", "type": kind, "payload": {} })).await;
        assert_invalid(&answer, &["type"]);
    }
    let answer = post(json!({ "title": "", "type": "BAD", "payload": {} })).await;
    assert_invalid(&answer, &["title", "type"]);
    let answer = post(json!({ "title": 5, "type": "x", "payload": {} })).await;
    assert_invalid(&answer, &["title"]);
    let answer = post(json!({ "title": "t", "type": "x", "payload": {}, "owner_id": "bob" })).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
    assert_eq!(answer.error_code(), "validation_failed");
    assert!(
        answer.json["error"]["fields"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("owner_id")),
        "{}",
        answer.json
    );
    let answer = post(json!({ "title": "t", "type": "x" })).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
    assert_eq!(answer.error_code(), "validation_failed");
    assert!(
        answer.json["error"]["fields"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("payload")),
        "{}",
        answer.json
    );

    let answer = app
        .post("/api/reports")
        .user("alice")
        .raw("application/json", b"{\"title\": ".to_vec())
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "invalid_json");
    let answer = app
        .post("/api/reports")
        .user("alice")
        .raw("text/plain", b"{}".to_vec())
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.error_code(), "unsupported_media_type");

    // Nothing refused was stored.
    let list = app.get("/api/reports").user("alice").send().await;
    assert_eq!(ids(&list).len(), 1, "{}", list.json);
    app.finish().await;
});

both_databases!(payload_is_limited_to_256_kib, |app| async move {
    // A string payload serializes with its two quotes.
    let at_limit = "x".repeat(PAYLOAD_MAX - 2);
    let answer = app
        .post("/api/reports")
        .user("alice")
        .json(&json!({ "title": "big", "type": "big", "payload": at_limit }))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.status);
    assert_eq!(
        answer.json["payload"].as_str().map(str::len),
        Some(PAYLOAD_MAX - 2)
    );

    let over = "x".repeat(PAYLOAD_MAX - 1);
    let answer = app
        .post("/api/reports")
        .user("alice")
        .json(&json!({ "title": "big", "type": "big", "payload": over }))
        .send()
        .await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.json
    );
    assert_eq!(answer.error_code(), "payload_too_large");
    assert_eq!(answer.field_paths(), ["payload"]);

    // The whole body is limited to 1 MiB before anything is parsed.
    let huge = "x".repeat(1024 * 1024 + 1);
    let answer = app
        .post("/api/reports")
        .user("alice")
        .json(&json!({ "title": "huge", "type": "big", "payload": huge }))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "payload_too_large");

    let list = app.get("/api/reports").user("alice").send().await;
    assert_eq!(ids(&list).len(), 1, "{}", list.json);
    app.finish().await;
});

both_databases!(another_users_report_is_not_found, |app| async move {
    let report = create(&app, "alice", "alice's", "sales").await;
    let id = report["id"].as_str().expect("id");
    let path = format!("/api/reports/{id}");

    let answer = app.get(&path).user("bob").send().await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.json);
    assert_eq!(answer.error_code(), "not_found");
    // The same answer as for a report that does not exist.
    let missing = app
        .get(&format!("/api/reports/{}", uuid::Uuid::new_v4()))
        .user("bob")
        .send()
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["error"]["message"],
        answer.json["error"]["message"]
    );

    // A non-admin's PATCH of someone else's report: 404 too, never 403.
    let answer = app
        .patch(&path)
        .user("bob")
        .json(&json!({ "status": "processing" }))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.json);
    assert_eq!(answer.error_code(), "not_found");

    let bobs = app.get("/api/reports").user("bob").send().await;
    assert_eq!(bobs.status, StatusCode::OK);
    assert_eq!(bobs.json, json!({ "items": [], "next_cursor": null }));
    let bobs = app
        .get("/api/reports?include_total=true")
        .user("bob")
        .send()
        .await;
    assert_eq!(bobs.json["total"], 0);
    // Bob's own reports do not bring Alice's with them.
    create(&app, "bob", "bob's", "sales").await;
    let bobs = app.get("/api/reports").user("bob").send().await;
    assert_eq!(bobs.json["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(bobs.json["items"][0]["owner_id"], "bob");

    let alices = app.get(&path).user("alice").send().await;
    assert_eq!(alices.status, StatusCode::OK);
    assert_eq!(alices.json, report);
    app.finish().await;
});

both_databases!(malformed_ids_are_not_found, |app| async move {
    let report = create(&app, "alice", "r", "sales").await;
    let id = report["id"].as_str().expect("id");
    let upper = id.to_uppercase();
    let simple = id.replace('-', "");
    for bad in [
        "not-a-uuid",
        "1",
        "%27%20OR%201%3D1",
        upper.as_str(),
        simple.as_str(),
    ] {
        let answer = app
            .get(&format!("/api/reports/{bad}"))
            .user("alice")
            .send()
            .await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{bad}: {}",
            answer.json
        );
        assert_eq!(answer.error_code(), "not_found");
        let answer = app
            .patch(&format!("/api/reports/{bad}"))
            .admin("root")
            .json(&json!({ "status": "processing" }))
            .send()
            .await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{bad}: {}",
            answer.json
        );
    }
    app.finish().await;
});

both_databases!(
    admin_sees_every_report_and_filters_by_owner,
    |app| async move {
        let a1 = create(&app, "alice", "a1", "sales").await;
        create(&app, "alice", "a2", "sales").await;
        let b1 = create(&app, "bob", "b1", "sales").await;

        let all = app
            .get("/api/reports?include_total=true")
            .admin("root")
            .send()
            .await;
        assert_eq!(all.status, StatusCode::OK, "{}", all.json);
        assert_eq!(ids(&all).len(), 3);
        assert_eq!(all.json["total"], 3);

        let alices = app
            .get("/api/reports?owner=alice&include_total=true")
            .admin("root")
            .send()
            .await;
        assert_eq!(alices.status, StatusCode::OK, "{}", alices.json);
        assert_eq!(ids(&alices).len(), 2);
        assert_eq!(alices.json["total"], 2);
        assert!(alices.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|r| r["owner_id"] == "alice"));
        let bobs = app.get("/api/reports?owner=bob").admin("root").send().await;
        assert_eq!(ids(&bobs), [b1["id"].as_str().expect("id")]);
        let nobody = app
            .get("/api/reports?owner=nobody")
            .admin("root")
            .send()
            .await;
        assert_eq!(ids(&nobody), Vec::<String>::new());

        let one = app
            .get(&format!("/api/reports/{}", a1["id"].as_str().expect("id")))
            .identity("ops-1", None, "ops,admin")
            .send()
            .await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.json);
        assert_eq!(one.json, a1);

        // `owner` is not a parameter for a non-admin, even naming themselves.
        let answer = app.get("/api/reports?owner=bob").user("alice").send().await;
        assert_invalid(&answer, &["owner"]);
        let answer = app
            .get("/api/reports?owner=alice")
            .user("alice")
            .send()
            .await;
        assert_invalid(&answer, &["owner"]);
        let answer = app.get("/api/reports?owner=").admin("root").send().await;
        assert_invalid(&answer, &["owner"]);
        app.finish().await;
    }
);

both_databases!(every_filter_applies, |app| async move {
    let s = 1_000_000; // one second
    let p0 = insert_row(&app, "alice", "sales", "pending", BASE).await;
    let r1 = insert_row(&app, "alice", "sales", "ready", BASE + s).await;
    let f2 = insert_row(&app, "alice", "usage", "failed", BASE + 2 * s).await;
    let x3 = insert_row(&app, "alice", "usage", "processing", BASE + 3 * s).await;
    let r4 = insert_row(&app, "alice", "usage", "ready", BASE + 4 * s).await;
    let bob = insert_row(&app, "bob", "sales", "ready", BASE + s).await;

    let list = |query: String| {
        let app = &app;
        async move {
            let answer = app
                .get(&format!("/api/reports?order=asc&{query}"))
                .user("alice")
                .send()
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.json);
            ids(&answer)
        }
    };
    assert_eq!(list("status=pending".into()).await, [p0.as_str()]);
    assert_eq!(list("status=processing".into()).await, [x3.as_str()]);
    assert_eq!(
        list("status=ready".into()).await,
        [r1.as_str(), r4.as_str()]
    );
    assert_eq!(list("status=failed".into()).await, [f2.as_str()]);
    assert_eq!(list("type=sales".into()).await, [p0.as_str(), r1.as_str()]);
    assert_eq!(list("type=none".into()).await, Vec::<String>::new());
    // created_from inclusive, created_to exclusive.
    let from = time(BASE + s);
    let to = time(BASE + 3 * s);
    assert_eq!(
        list(format!("created_from={from}")).await,
        [r1.as_str(), f2.as_str(), x3.as_str(), r4.as_str()]
    );
    assert_eq!(
        list(format!("created_to={to}")).await,
        [p0.as_str(), r1.as_str(), f2.as_str()]
    );
    assert_eq!(
        list(format!("created_from={from}&created_to={to}")).await,
        [r1.as_str(), f2.as_str()]
    );
    // Equal bounds: an empty interval, not an error.
    assert_eq!(
        list(format!("created_from={from}&created_to={from}")).await,
        Vec::<String>::new()
    );
    // A bound one microsecond past an item excludes it (from) and includes it (to).
    let just_after = time(BASE + s + 1);
    assert_eq!(
        list(format!("created_from={just_after}&created_to={to}")).await,
        [f2.as_str()]
    );
    assert_eq!(
        list(format!("created_to={just_after}")).await,
        [p0.as_str(), r1.as_str()]
    );
    // Fractions finer than a microsecond round so both bounds stay exact.
    let nanos = "2023-11-14T22:13:21.000000001Z"; // BASE + s + 1ns
    assert_eq!(
        list(format!("created_from={nanos}&created_to={to}")).await,
        [f2.as_str()]
    );
    assert_eq!(
        list(format!("created_to={nanos}")).await,
        [p0.as_str(), r1.as_str()]
    );
    // Offsets other than Z are the same instant.
    assert_eq!(
        list("created_from=2023-11-14T23:13:22%2B01:00".into()).await,
        [f2.as_str(), x3.as_str(), r4.as_str()]
    );
    // Filters combine.
    assert_eq!(
        list(format!("type=usage&status=ready&created_from={from}")).await,
        [r4.as_str()]
    );
    // The admin's view of the same filter shows Bob's too.
    let answer = app
        .get("/api/reports?status=ready&type=sales")
        .admin("root")
        .send()
        .await;
    let mut got = ids(&answer);
    got.sort();
    let mut want = vec![r1.as_str(), bob.as_str()];
    want.sort();
    assert_eq!(got, want);

    let answer = app
        .get(&format!("/api/reports?created_from={to}&created_to={from}"))
        .user("alice")
        .send()
        .await;
    assert_invalid(&answer, &["created_from"]);
    app.finish().await;
});

both_databases!(sorts_by_created_at_both_ways, |app| async move {
    let mut rows = Vec::new();
    for (offset, owner) in [
        (5, "alice"),
        (1, "alice"),
        (3, "alice"),
        (3, "alice"),
        (3, "alice"),
        (9, "alice"),
    ] {
        let at = BASE + offset;
        rows.push((at, insert_row(&app, owner, "sales", "pending", at).await));
    }
    let desc = app.get("/api/reports").user("alice").send().await;
    assert_eq!(ids(&desc), sorted(rows.clone(), true), "default is desc");
    let desc = app
        .get("/api/reports?sort=created_at&order=desc")
        .user("alice")
        .send()
        .await;
    assert_eq!(ids(&desc), sorted(rows.clone(), true));
    let asc = app
        .get("/api/reports?sort=created_at&order=asc")
        .user("alice")
        .send()
        .await;
    assert_eq!(ids(&asc), sorted(rows.clone(), false));
    let times: Vec<&str> = asc.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["created_at"].as_str().expect("created_at"))
        .collect();
    assert_eq!(times[0], time(BASE + 1));
    assert_eq!(times[5], time(BASE + 9));
    app.finish().await;
});

both_databases!(paginates_every_item_exactly_once, |app| async move {
    // 25 of Alice's reports, in groups of 4 with the same created_at, inserted out of
    // order; Bob's reports are interleaved and must never show.
    let mut rows = Vec::new();
    for i in (0..25).rev() {
        let at = BASE + (i / 4) * 1000;
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        rows.push((at, insert_row(&app, "alice", kind, "pending", at).await));
        insert_row(&app, "bob", kind, "pending", at).await;
    }
    for (order, desc) in [("asc", false), ("desc", true)] {
        for limit in [1, 4, 7, 25, 100] {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let mut path =
                    format!("/api/reports?order={order}&limit={limit}&include_total=true");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let page = app.get(&path).user("alice").send().await;
                assert_eq!(page.status, StatusCode::OK, "{}", page.json);
                assert_eq!(page.json["total"], 25, "total ignores pagination");
                let got = ids(&page);
                assert!(got.len() <= limit, "{limit}");
                seen.extend(got);
                pages += 1;
                match page.json["next_cursor"].as_str() {
                    Some(next) => {
                        assert!(
                            next.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                            "base64url: {next}"
                        );
                        cursor = Some(next.to_owned());
                    }
                    None => {
                        assert_eq!(page.json["next_cursor"], Value::Null);
                        break;
                    }
                }
                assert!(pages <= 25, "no end");
            }
            assert_eq!(
                seen,
                sorted(rows.clone(), desc),
                "order={order} limit={limit}"
            );
            assert_eq!(pages, 25_usize.div_ceil(limit), "no empty last page");
        }
    }

    // Filters hold across pages, and the total counts the filtered set.
    let mut evens: Vec<(i64, String)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        // `rows` was built from i = 24 down to 0.
        if (24 - i) % 2 == 0 {
            evens.push(row.clone());
        }
    }
    let mut seen = Vec::new();
    let mut path = "/api/reports?type=even&limit=5&order=asc&include_total=true".to_owned();
    loop {
        let page = app.get(&path).user("alice").send().await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.json);
        assert_eq!(page.json["total"], 13);
        seen.extend(ids(&page));
        match page.json["next_cursor"].as_str() {
            Some(next) => {
                path = format!(
                    "/api/reports?type=even&limit=5&order=asc&include_total=true&cursor={next}"
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, sorted(evens, false));

    // Without include_total there is no `total` key.
    let page = app.get("/api/reports?limit=2").user("alice").send().await;
    assert!(page.json.get("total").is_none(), "{}", page.json);
    assert_eq!(ids(&page).len(), 2);
    let page = app
        .get("/api/reports?limit=2&include_total=false")
        .user("alice")
        .send()
        .await;
    assert!(page.json.get("total").is_none(), "{}", page.json);
    app.finish().await;
});

both_databases!(
    cursors_are_bound_to_their_order_and_checked,
    |app| async move {
        for i in 0..3 {
            insert_row(&app, "alice", "sales", "pending", BASE + i).await;
        }
        let page = app
            .get("/api/reports?limit=1&order=asc")
            .user("alice")
            .send()
            .await;
        let cursor = page.json["next_cursor"]
            .as_str()
            .expect("cursor")
            .to_owned();

        let answer = app
            .get(&format!("/api/reports?limit=1&cursor={cursor}"))
            .user("alice")
            .send()
            .await;
        assert_invalid(&answer, &["cursor"]);
        assert!(
            answer.json["error"]["fields"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("order=asc")),
            "{}",
            answer.json
        );

        // Every single-character edit is refused.
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for at in 0..cursor.len() {
            let current = cursor.as_bytes()[at];
            let replacement = alphabet
                .bytes()
                .find(|b| *b != current)
                .expect("another character");
            let mut edited = cursor.clone().into_bytes();
            edited[at] = replacement;
            let edited = String::from_utf8(edited).expect("ascii");
            let answer = app
                .get(&format!("/api/reports?order=asc&cursor={edited}"))
                .user("alice")
                .send()
                .await;
            assert_invalid(&answer, &["cursor"]);
        }
        for bad in ["", "x", "%21%21%21", "djEuY3JlYXRlZF9hdC5hc2MuMS54"] {
            let answer = app
                .get(&format!("/api/reports?order=asc&cursor={bad}"))
                .user("alice")
                .send()
                .await;
            assert_invalid(&answer, &["cursor"]);
        }
        app.finish().await;
    }
);

both_databases!(bad_query_parameters_name_the_parameter, |app| async move {
    let cases: &[(&str, &[&str])] = &[
        ("status=done", &["status"]),
        ("status=", &["status"]),
        ("status=PENDING", &["status"]),
        ("type=Sales", &["type"]),
        ("type=", &["type"]),
        ("created_from=yesterday", &["created_from"]),
        ("created_from=2025-02-30T00:00:00Z", &["created_from"]),
        ("created_to=2025-01-01", &["created_to"]),
        ("created_to=", &["created_to"]),
        ("sort=title", &["sort"]),
        ("order=up", &["order"]),
        ("order=ASC", &["order"]),
        ("limit=0", &["limit"]),
        ("limit=101", &["limit"]),
        ("limit=-1", &["limit"]),
        ("limit=%2B5", &["limit"]),
        ("limit=abc", &["limit"]),
        ("limit=", &["limit"]),
        ("cursor=abc", &["cursor"]),
        ("include_total=yes", &["include_total"]),
        ("foo=bar", &["foo"]),
        ("status=ready&status=failed", &["status"]),
        ("limit=0&limit=0&limit=0", &["limit"]),
        ("limit=5&page=2", &["page"]),
        ("status=done&limit=0&bar=1", &["bar", "status", "limit"]),
    ];
    for &(query, fields) in cases {
        let answer = app
            .get(&format!("/api/reports?{query}"))
            .user("alice")
            .send()
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            answer.json
        );
        assert_eq!(answer.error_code(), "validation_failed", "{query}");
        assert_eq!(answer.field_paths(), fields, "{query}: {}", answer.json);
    }
    for query in [
        "limit=1",
        "limit=100",
        "include_total=false",
        "sort=created_at",
        "",
    ] {
        let answer = app
            .get(&format!("/api/reports?{query}"))
            .user("alice")
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.json);
    }
    app.finish().await;
});

both_databases!(status_moves_follow_the_machine, |app| async move {
    let report = create(&app, "alice", "r", "sales").await;
    let id = report["id"].as_str().expect("id").to_owned();
    let path = format!("/api/reports/{id}");
    let patch = |body: Value| app.patch(&path).admin("root").json(&body).send();
    let conflict = |answer: &Answer, from: &str, to: &str| {
        assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.json);
        assert_eq!(answer.error_code(), "invalid_transition");
        let message = answer.json["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("`{from}`")) && message.contains(&format!("`{to}`")),
            "{message}"
        );
    };

    conflict(
        &patch(json!({ "status": "ready" })).await,
        "pending",
        "ready",
    );
    conflict(
        &patch(json!({ "status": "failed" })).await,
        "pending",
        "failed",
    );
    let answer = patch(json!({ "status": "pending" })).await;
    assert_invalid(&answer, &["status"]);
    let answer = patch(json!({ "status": "processing", "error": "no" })).await;
    assert_invalid(&answer, &["error"]);
    let answer = patch(json!({ "status": "processing", "owner_id": "x" })).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "validation_failed");
    let answer = patch(json!({})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "validation_failed");

    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let answer = patch(json!({ "status": "processing" })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["status"], "processing");
    assert_eq!(answer.json["error"], Value::Null);
    assert_eq!(answer.json["created_at"], report["created_at"]);
    let updated = answer.json["updated_at"]
        .as_str()
        .expect("updated_at")
        .parse::<jiff::Timestamp>()
        .expect("RFC 3339");
    let created = report["created_at"]
        .as_str()
        .expect("created_at")
        .parse::<jiff::Timestamp>()
        .expect("RFC 3339");
    assert!(updated > created);
    let got = app.get(&path).user("alice").send().await;
    assert_eq!(got.json, answer.json, "stored as answered");

    conflict(
        &patch(json!({ "status": "processing" })).await,
        "processing",
        "processing",
    );
    let answer = patch(json!({ "status": "ready", "error": "no" })).await;
    assert_invalid(&answer, &["error"]);
    let answer = patch(json!({ "status": "failed", "error": "" })).await;
    assert_invalid(&answer, &["error"]);

    let answer = patch(json!({ "status": "failed", "error": "the upstream timed out" })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["status"], "failed");
    assert_eq!(answer.json["error"], "the upstream timed out");
    let got = app.get(&path).user("alice").send().await;
    assert_eq!(got.json, answer.json);
    for to in ["processing", "ready", "failed"] {
        conflict(&patch(json!({ "status": to })).await, "failed", to);
    }

    // processing → ready, then terminal; `failed` without an error keeps error null.
    let other = create(&app, "alice", "r2", "sales").await;
    let other_path = format!("/api/reports/{}", other["id"].as_str().expect("id"));
    let patch_other = |body: Value| app.patch(&other_path).admin("root").json(&body).send();
    assert_eq!(
        patch_other(json!({ "status": "processing" })).await.status,
        StatusCode::OK
    );
    let answer = patch_other(json!({ "status": "ready", "error": null })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["status"], "ready");
    assert_eq!(answer.json["error"], Value::Null);
    for to in ["processing", "ready", "failed"] {
        conflict(&patch_other(json!({ "status": to })).await, "ready", to);
    }
    let third = create(&app, "alice", "r3", "sales").await;
    let third_path = format!("/api/reports/{}", third["id"].as_str().expect("id"));
    let patch_third = |body: Value| app.patch(&third_path).admin("root").json(&body).send();
    assert_eq!(
        patch_third(json!({ "status": "processing" })).await.status,
        StatusCode::OK
    );
    let answer = patch_third(json!({ "status": "failed" })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["error"], Value::Null);

    // The status filter sees the moves.
    let ready = app
        .get("/api/reports?status=ready")
        .user("alice")
        .send()
        .await;
    assert_eq!(ids(&ready), [other["id"].as_str().expect("id")]);
    app.finish().await;
});

both_databases!(only_admins_move_a_status, |app| async move {
    let report = create(&app, "alice", "r", "sales").await;
    let path = format!("/api/reports/{}", report["id"].as_str().expect("id"));
    let answer = app
        .patch(&path)
        .user("alice")
        .json(&json!({ "status": "processing" }))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.json);
    assert_eq!(answer.error_code(), "forbidden");
    let answer = app
        .patch(&path)
        .identity("alice", None, "ops,viewer")
        .json(&json!({ "status": "processing" }))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.json);
    let got = app.get(&path).user("alice").send().await;
    assert_eq!(got.json["status"], "pending", "nothing changed");
    app.finish().await;
});

both_databases!(concurrent_moves_apply_once, |app| async move {
    let report = create(&app, "alice", "r", "sales").await;
    let path = format!("/api/reports/{}", report["id"].as_str().expect("id"));
    let move_it = || {
        app.patch(&path)
            .admin("root")
            .json(&json!({ "status": "processing" }))
            .send()
    };
    let (a, b, c) = tokio::join!(move_it(), move_it(), move_it());
    let mut statuses = [a.status, b.status, c.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT, StatusCode::CONFLICT]
    );

    // The store's move checks the current status in the same statement: a move from a
    // status the report has already left changes nothing.
    use gardien_backend::reports::model::ReportStatus::{Pending, Processing, Ready};
    use gardien_backend::reports::store;
    let id = create(&app, "alice", "r2", "sales").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let db = &app.db.db;
    let now = gardien_backend::db::now_micros();
    assert!(store::set_status(db, &id, Pending, Processing, None, now)
        .await
        .expect("move"));
    assert!(!store::set_status(db, &id, Pending, Processing, None, now)
        .await
        .expect("stale"));
    assert!(!store::set_status(db, &id, Pending, Ready, None, now)
        .await
        .expect("stale"));
    let missing = uuid::Uuid::new_v4().to_string();
    assert!(
        !store::set_status(db, &missing, Pending, Processing, None, now)
            .await
            .expect("missing")
    );
    let got = app
        .get(&format!("/api/reports/{id}"))
        .user("alice")
        .send()
        .await;
    assert_eq!(got.json["status"], "processing");
    app.finish().await;
});

both_databases!(every_endpoint_needs_an_identity, |app| async move {
    let report = create(&app, "alice", "r", "sales").await;
    let path = format!("/api/reports/{}", report["id"].as_str().expect("id"));
    let body = json!({ "title": "t", "type": "t", "payload": {} });
    let patch = json!({ "status": "processing" });
    let answers = [
        app.get("/api/reports").send().await,
        app.get(&path).send().await,
        app.post("/api/reports").json(&body).send().await,
        app.patch(&path).json(&patch).send().await,
        app.get("/api/reports")
            .user("alice")
            .unsigned()
            .send()
            .await,
        app.get(&path).user("alice").unsigned().send().await,
        app.post("/api/reports")
            .user("alice")
            .unsigned()
            .json(&body)
            .send()
            .await,
        app.patch(&path)
            .admin("root")
            .unsigned()
            .json(&patch)
            .send()
            .await,
        app.get(&path).user("alice").tampered().send().await,
        app.patch(&path)
            .admin("root")
            .tampered()
            .json(&patch)
            .send()
            .await,
    ];
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{i}: {}",
            answer.json
        );
        assert_eq!(answer.error_code(), "unauthenticated", "{i}");
    }
    let got = app.get(&path).user("alice").send().await;
    assert_eq!(got.json["status"], "pending");
    let list = app.get("/api/reports").user("alice").send().await;
    assert_eq!(
        ids(&list).len(),
        1,
        "the unauthenticated POSTs stored nothing"
    );
    app.finish().await;
});

both_databases!(openapi_documents_the_reports_endpoints, |app| async move {
    let doc = app.get("/openapi.json").unsigned().send().await.json;
    let paths = &doc["paths"];
    // Every schema the reports endpoints reference is defined.
    let mut pending: Vec<&Value> = paths
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| path.starts_with("/api/reports"))
        .map(|(_, item)| item)
        .collect();
    let mut checked = std::collections::BTreeSet::new();
    while let Some(node) = pending.pop() {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    let name = reference
                        .strip_prefix("#/components/schemas/")
                        .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
                    let schema = &doc["components"]["schemas"][name];
                    assert!(schema.is_object(), "dangling $ref {reference}");
                    if checked.insert(name.to_owned()) {
                        pending.push(schema);
                    }
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    assert!(
        checked.contains("Report") && checked.contains("ErrorBody"),
        "{checked:?}"
    );
    for (path, method, statuses) in [
        ("/api/reports", "get", &["200", "400", "401"][..]),
        (
            "/api/reports",
            "post",
            &["201", "400", "401", "413", "415"][..],
        ),
        ("/api/reports/{id}", "get", &["200", "401", "404"][..]),
        (
            "/api/reports/{id}",
            "patch",
            &["200", "400", "401", "403", "404", "409", "413", "415"][..],
        ),
    ] {
        let responses = paths[path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}: {doc}"));
        let mut got: Vec<&str> = responses.keys().map(String::as_str).collect();
        got.sort();
        assert_eq!(got, statuses, "{method} {path}");
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["NewReport"]["additionalProperties"], false);
    assert_eq!(schemas["StatusChange"]["additionalProperties"], false);
    assert_eq!(
        schemas["Report"]["properties"]["created_at"]["format"],
        "date-time"
    );
    let required = schemas["Report"]["required"].as_array().expect("required");
    for name in [
        "id",
        "owner_id",
        "title",
        "type",
        "status",
        "payload",
        "error",
        "created_at",
        "updated_at",
    ] {
        assert!(
            required.contains(&json!(name)),
            "{name}: {}",
            schemas["Report"]
        );
    }
    let page_required = schemas["ReportPage"]["required"]
        .as_array()
        .expect("required");
    assert!(page_required.contains(&json!("next_cursor")));
    assert!(!page_required.contains(&json!("total")));
    let params: Vec<&str> = paths["/api/reports"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        params,
        [
            "status",
            "type",
            "owner",
            "created_from",
            "created_to",
            "sort",
            "order",
            "limit",
            "cursor",
            "include_total"
        ]
    );
    app.finish().await;
});
