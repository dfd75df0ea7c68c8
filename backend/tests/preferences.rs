//! Notification preferences on SQLite and PostgreSQL: defaults, PUT/PATCH, validation paths,
//! the security rule, ETags and If-Match (stale and concurrent), ownership and admin access,
//! identity, categories added by templates, and what delivery reads.

mod support;

use axum::http::StatusCode;
use gardien_backend::preferences::{model, store};
use serde_json::{json, Value};
use support::*;

const PATH: &str = "/api/notifications/preferences";

fn on() -> Value {
    json!({"email": true, "sms": true, "push": true, "in_app": true})
}

fn off() -> Value {
    json!({"email": false, "sms": false, "push": false, "in_app": false})
}

/// The documented defaults, for a user whose identity email is `email`.
fn defaults(email: Option<&str>) -> Value {
    json!({
        "channels": {"email": true, "sms": false, "push": true, "in_app": true},
        "categories": {"account": on(), "marketing": off(), "reports": on(), "security": on()},
        "quiet_hours": null,
        "locale": "en",
        "digest": "off",
        "contacts": {"email": email, "phone": null},
    })
}

/// A full, valid document different from the defaults.
fn custom() -> Value {
    json!({
        "channels": {"email": true, "sms": true, "push": false, "in_app": true},
        "categories": {
            "security": {"email": true, "sms": true, "push": true, "in_app": true},
            "account": {"email": true, "sms": false, "push": false, "in_app": true},
            "reports": {"email": false, "sms": false, "push": true, "in_app": true},
            "marketing": {"email": true, "sms": false, "push": false, "in_app": false},
        },
        "quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Europe/Paris"},
        "locale": "fr-CA",
        "digest": "weekly",
        "contacts": {"email": "ada@example.org", "phone": "+33612345678"},
    })
}

fn etag(answer: &Answer) -> String {
    answer
        .header("etag")
        .unwrap_or_else(|| panic!("no ETag: {:?} {}", answer.status, answer.json))
}

async fn stored_rows(app: &TestApp) -> i64 {
    let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM notification_preferences")
        .fetch_one(&app.db.db.pool)
        .await
        .expect("count");
    row.0
}

async fn stored_version(app: &TestApp, user: &str) -> Option<i64> {
    sqlx::query_as::<_, (i64,)>("SELECT version FROM notification_preferences WHERE user_id = $1")
        .bind(user)
        .fetch_optional(&app.db.db.pool)
        .await
        .expect("version")
        .map(|r| r.0)
}

both_databases!(
    a_user_with_nothing_stored_gets_the_defaults,
    |app| async move {
        let answer = app.get(PATH).user("alice").send().await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        assert_eq!(answer.json, defaults(Some("alice@example.com")));
        assert_eq!(etag(&answer), "\"0\"");
        // Without an identity email, contacts.email is null.
        let answer = app.get(PATH).identity("bob", None, "").send().await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json, defaults(None));
        // An identity email of the wrong shape is not offered as a contact.
        let answer = app
            .get(PATH)
            .identity("carol", Some("not-an-address"), "")
            .send()
            .await;
        assert_eq!(answer.json["contacts"]["email"], Value::Null);
        // Reading writes nothing.
        assert_eq!(stored_rows(&app).await, 0);
        app.finish().await;
    }
);

both_databases!(put_replaces_then_get_returns_it, |app| async move {
    let mut body = custom();
    body["locale"] = json!("FR-ca");
    body["contacts"]["email"] = json!("ada@EXAMPLE.Org");
    let put = app.put(PATH).user("alice").json(&body).send().await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    assert_eq!(put.json, custom(), "normalised: locale case, email domain");
    assert_eq!(etag(&put), "\"1\"");
    let get = app.get(PATH).user("alice").send().await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.json, custom());
    assert_eq!(etag(&get), "\"1\"");
    // The same document again changes nothing: no new version.
    let again = app.put(PATH).user("alice").json(&custom()).send().await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(etag(&again), "\"1\"");
    assert_eq!(stored_version(&app, "alice").await, Some(1));
    // A different one makes version 2; contacts.email null follows the identity again.
    let mut next = custom();
    next["digest"] = json!("daily");
    next["contacts"]["email"] = Value::Null;
    let put = app.put(PATH).user("alice").json(&next).send().await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    assert_eq!(etag(&put), "\"2\"");
    assert_eq!(put.json["digest"], "daily");
    assert_eq!(put.json["contacts"]["email"], "alice@example.com");
    assert_eq!(stored_version(&app, "alice").await, Some(2));
    // Another user is untouched.
    let bob = app.get(PATH).user("bob").send().await;
    assert_eq!(bob.json, defaults(Some("bob@example.com")));
    assert_eq!(etag(&bob), "\"0\"");
    app.finish().await;
});

both_databases!(put_names_every_missing_field, |app| async move {
    let answer = app
        .put(PATH)
        .user("alice")
        .json(&json!({"channels": {"email": true}}))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "validation_failed");
    assert_eq!(
        answer.field_paths(),
        [
            "channels.sms",
            "channels.push",
            "channels.in_app",
            "categories",
            "quiet_hours",
            "locale",
            "digest",
            "contacts"
        ]
    );
    let mut body = custom();
    body["categories"]
        .as_object_mut()
        .expect("categories")
        .remove("reports");
    body["categories"]["account"]
        .as_object_mut()
        .expect("account")
        .remove("push");
    body["contacts"]
        .as_object_mut()
        .expect("contacts")
        .remove("phone");
    body["quiet_hours"]
        .as_object_mut()
        .expect("quiet hours")
        .remove("time_zone");
    let answer = app.put(PATH).user("alice").json(&body).send().await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.field_paths(),
        [
            "categories.account.push",
            "categories.reports",
            "quiet_hours.time_zone",
            "contacts.phone"
        ]
    );
    assert_eq!(stored_rows(&app).await, 0);
    app.finish().await;
});

both_databases!(patch_merges_and_null_resets_to_defaults, |app| async move {
    let first = app
        .patch(PATH)
        .user("alice")
        .json(&json!({
            "channels": {"sms": true},
            "categories": {"marketing": {"email": true}, "reports": {"push": false}},
            "quiet_hours": {"start": "23:30", "end": "06:15", "time_zone": "america/new_york"},
            "locale": "fr-ca",
            "contacts": {"email": "alice@work.example", "phone": "+15145550123"},
        }))
        .send()
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    assert_eq!(etag(&first), "\"1\"");
    let mut expected = defaults(Some("alice@example.com"));
    expected["channels"]["sms"] = json!(true);
    expected["categories"]["marketing"]["email"] = json!(true);
    expected["categories"]["reports"]["push"] = json!(false);
    expected["quiet_hours"] =
        json!({"start": "23:30", "end": "06:15", "time_zone": "America/New_York"});
    expected["locale"] = json!("fr-CA");
    expected["contacts"] = json!({"email": "alice@work.example", "phone": "+15145550123"});
    // The zone is answered in its canonical spelling.
    assert_eq!(
        first.json["quiet_hours"]["time_zone"], expected["quiet_hours"]["time_zone"],
        "{}",
        first.json
    );
    assert_eq!(first.json, expected);

    // A merge patch content type; members left out stay; null resets to the default.
    let second = app
        .patch(PATH)
        .user("alice")
        .raw(
            "application/merge-patch+json",
            serde_json::to_vec(&json!({
                "channels": {"sms": null},
                "categories": {"marketing": null},
                "quiet_hours": null,
                "locale": null,
                "contacts": {"email": null},
                "digest": "daily",
            }))
            .expect("json"),
        )
        .send()
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);
    assert_eq!(etag(&second), "\"2\"");
    let mut expected = defaults(Some("alice@example.com"));
    expected["categories"]["reports"]["push"] = json!(false);
    expected["digest"] = json!("daily");
    expected["contacts"]["phone"] = json!("+15145550123");
    assert_eq!(second.json, expected);

    // Quiet hours merge into the existing window.
    app.patch(PATH)
        .user("alice")
        .json(&json!({"quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Europe/Paris"}}))
        .send()
        .await;
    let moved = app
        .patch(PATH)
        .user("alice")
        .json(&json!({"quiet_hours": {"end": "08:00"}}))
        .send()
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.json);
    assert_eq!(
        moved.json["quiet_hours"],
        json!({"start": "22:00", "end": "08:00", "time_zone": "Europe/Paris"})
    );
    assert_eq!(etag(&moved), "\"4\"");

    // An empty patch changes nothing and keeps the version.
    let empty = app.patch(PATH).user("alice").json(&json!({})).send().await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(etag(&empty), "\"4\"");
    assert_eq!(empty.json, moved.json);

    // Resetting everything: the whole document back to the defaults (a new version).
    let reset = app
        .patch(PATH)
        .user("alice")
        .json(
            &json!({"channels": null, "categories": null, "quiet_hours": null,
            "locale": null, "digest": null, "contacts": null}),
        )
        .send()
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.json);
    assert_eq!(reset.json, defaults(Some("alice@example.com")));
    assert_eq!(etag(&reset), "\"5\"");
    app.finish().await;
});

/// Sends `patch` and checks the 400 names exactly `paths`.
async fn refused(app: &TestApp, patch: Value, paths: &[&str]) {
    let answer = app.patch(PATH).user("alice").json(&patch).send().await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "{patch}: {}",
        answer.json
    );
    assert_eq!(answer.error_code(), "validation_failed", "{patch}");
    assert_eq!(answer.field_paths(), paths, "{patch}: {}", answer.json);
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut body = custom();
    edit(&mut body);
    body
}

both_databases!(validation_errors_name_the_field, |app| async move {
    let base = app.put(PATH).user("alice").json(&custom()).send().await;
    assert_eq!(base.status, StatusCode::OK);

    refused(
        &app,
        json!({"contacts": {"phone": "0612345678"}}),
        &["contacts.phone"],
    )
    .await;
    refused(
        &app,
        json!({"contacts": {"phone": "+0612345678"}}),
        &["contacts.phone"],
    )
    .await;
    refused(
        &app,
        json!({"contacts": {"phone": "+1234567"}}),
        &["contacts.phone"],
    )
    .await;
    refused(
        &app,
        json!({"contacts": {"email": "ada@"}}),
        &["contacts.email"],
    )
    .await;
    refused(
        &app,
        json!({"contacts": {"fax": "+33612345678"}}),
        &["contacts.fax"],
    )
    .await;
    refused(
        &app,
        json!({"quiet_hours": {"time_zone": "Mars/Olympus_Mons"}}),
        &["quiet_hours.time_zone"],
    )
    .await;
    refused(
        &app,
        json!({"quiet_hours": {"start": "25:00"}}),
        &["quiet_hours.start"],
    )
    .await;
    refused(
        &app,
        json!({"quiet_hours": {"end": "7:00"}}),
        &["quiet_hours.end"],
    )
    .await;
    refused(
        &app,
        json!({"quiet_hours": {"end": "22:00"}}),
        &["quiet_hours.end"],
    )
    .await;
    refused(
        &app,
        json!({"quiet_hours": {"start": 2200}}),
        &["quiet_hours.start"],
    )
    .await;
    refused(
        &app,
        json!({"quiet_hours": "22:00-07:00"}),
        &["quiet_hours"],
    )
    .await;
    refused(
        &app,
        json!({"categories": {"promos": {"email": true}}}),
        &["categories.promos"],
    )
    .await;
    // An unknown category is refused even when the patch only resets it.
    refused(
        &app,
        json!({"categories": {"promos": null}}),
        &["categories.promos"],
    )
    .await;
    refused(&app, json!({"channels": {"fax": true}}), &["channels.fax"]).await;
    refused(
        &app,
        json!({"categories": {"security": {"pigeon": true}}}),
        &["categories.security.pigeon"],
    )
    .await;
    refused(&app, json!({"theme": "dark"}), &["theme"]).await;
    refused(&app, json!({"theme": null}), &["theme"]).await;
    refused(
        &app,
        json!({"channels": {"email": "yes"}}),
        &["channels.email"],
    )
    .await;
    refused(&app, json!({"channels": true}), &["channels"]).await;
    refused(
        &app,
        json!({"categories": {"account": false}}),
        &["categories.account"],
    )
    .await;
    refused(&app, json!({"digest": "hourly"}), &["digest"]).await;
    refused(&app, json!({"digest": 1}), &["digest"]).await;
    refused(&app, json!({"locale": "french"}), &["locale"]).await;
    refused(&app, json!({"locale": "fr_CA"}), &["locale"]).await;
    refused(&app, json!({"locale": 33}), &["locale"]).await;
    refused(&app, json!({"contacts": {"email": 7}}), &["contacts.email"]).await;
    refused(&app, json!([1, 2]), &["body"]).await;
    // Several problems at once, each at its path.
    refused(
        &app,
        json!({"channels": {"sms": 1}, "digest": "never", "contacts": {"phone": "12"}, "x": 1}),
        &["x", "channels.sms", "digest", "contacts.phone"],
    )
    .await;

    // The same through PUT.
    let cases: Vec<(Value, &[&str])> = vec![
        (
            with(|b| b["contacts"]["phone"] = json!("+33 6 12 34 56 78")),
            &["contacts.phone"],
        ),
        (
            with(|b| b["quiet_hours"]["time_zone"] = json!("Europe/Pariss")),
            &["quiet_hours.time_zone"],
        ),
        (
            with(|b| b["quiet_hours"]["start"] = json!("22h00")),
            &["quiet_hours.start"],
        ),
        (
            with(|b| b["categories"]["promos"] = on()),
            &["categories.promos"],
        ),
        (
            with(|b| b["channels"]["fax"] = json!(true)),
            &["channels.fax"],
        ),
        (with(|b| b["extra"] = json!({})), &["extra"]),
        (
            with(|b| b["channels"]["push"] = json!(null)),
            &["channels.push"],
        ),
        (with(|b| b["locale"] = json!(null)), &["locale"]),
        (with(|b| b["categories"] = json!([])), &["categories"]),
    ];
    for (body, paths) in cases {
        let answer = app.put(PATH).user("alice").json(&body).send().await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.error_code(), "validation_failed");
        assert_eq!(answer.field_paths(), paths, "{}", answer.json);
    }

    // Not JSON, not an object, wrong content type, too large.
    let answer = app
        .put(PATH)
        .user("alice")
        .raw("application/json", b"{\"channels\":".to_vec())
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "invalid_json");
    let answer = app
        .put(PATH)
        .user("alice")
        .json(&json!("prefs"))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.field_paths(), ["body"]);
    let answer = app
        .patch(PATH)
        .user("alice")
        .raw("text/plain", b"{}".to_vec())
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.error_code(), "unsupported_media_type");
    let mut big = custom();
    big["padding"] = json!("x".repeat(1024 * 1024 + 1));
    let answer = app.put(PATH).user("alice").json(&big).send().await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "payload_too_large");

    // Nothing changed.
    let get = app.get(PATH).user("alice").send().await;
    assert_eq!(get.json, custom());
    assert_eq!(etag(&get), "\"1\"");
    app.finish().await;
});

both_databases!(
    security_notifications_cannot_be_turned_off,
    |app| async move {
        let base = app.put(PATH).user("alice").json(&custom()).send().await;
        assert_eq!(etag(&base), "\"1\"");
        let cases: Vec<(Value, &[&str])> = vec![
            (
                json!({"categories": {"security": {"email": false}}}),
                &["categories.security.email"],
            ),
            (
                json!({"categories": {"security": {"in_app": false}}}),
                &["categories.security.in_app"],
            ),
            (json!({"channels": {"email": false}}), &["channels.email"]),
            (json!({"channels": {"in_app": false}}), &["channels.in_app"]),
            (
                json!({"channels": {"email": false, "in_app": false},
                   "categories": {"security": {"email": false, "in_app": false}}}),
                &[
                    "channels.email",
                    "categories.security.email",
                    "channels.in_app",
                    "categories.security.in_app",
                ],
            ),
        ];
        for (patch, paths) in cases {
            let answer = app.patch(PATH).user("alice").json(&patch).send().await;
            assert_eq!(
                answer.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{patch}: {}",
                answer.json
            );
            assert_eq!(answer.error_code(), "security_notifications_required");
            let message = answer.json["error"]["message"].as_str().expect("message");
            assert!(
                message.starts_with("security notifications cannot be turned off"),
                "{message}"
            );
            assert_eq!(answer.field_paths(), paths, "{patch}");
            assert_eq!(etag(&answer), "\"1\"", "the 422 carries the current ETag");
        }
        // Through PUT as well.
        let answer = app
            .put(PATH)
            .user("alice")
            .json(&with(|b| b["categories"]["security"] = off()))
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer.error_code(), "security_notifications_required");
        assert_eq!(
            answer.field_paths(),
            ["categories.security.email", "categories.security.in_app"]
        );
        // Also for a user with nothing stored: still nothing stored after.
        let answer = app
            .patch(PATH)
            .user("bob")
            .json(&json!({"channels": {"email": false}}))
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(stored_version(&app, "bob").await, None);

        // Nothing changed.
        let get = app.get(PATH).user("alice").send().await;
        assert_eq!(get.json, custom());
        assert_eq!(etag(&get), "\"1\"");
        // SMS and push for security may be turned off.
        let answer = app
            .patch(PATH)
            .user("alice")
            .json(&json!({"categories": {"security": {"sms": false, "push": false}}}))
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        assert_eq!(
            answer.json["categories"]["security"],
            json!({"email": true, "sms": false, "push": false, "in_app": true})
        );
        app.finish().await;
    }
);

both_databases!(etags_and_stale_if_match, |app| async move {
    let get = app.get(PATH).user("alice").send().await;
    assert_eq!(etag(&get), "\"0\"");
    // The defaults' ETag is a valid precondition.
    let first = app
        .patch(PATH)
        .user("alice")
        .header("if-match", "\"0\"")
        .json(&json!({"digest": "daily"}))
        .send()
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    assert_eq!(etag(&first), "\"1\"");
    // A stale one: 412, the current ETag sent back, nothing changed.
    for (method, body) in [("patch", json!({"digest": "weekly"})), ("put", custom())] {
        let call = if method == "patch" {
            app.patch(PATH)
        } else {
            app.put(PATH)
        };
        let stale = call
            .user("alice")
            .header("if-match", "\"0\"")
            .json(&body)
            .send()
            .await;
        assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{method}");
        assert_eq!(stale.error_code(), "precondition_failed");
        assert_eq!(etag(&stale), "\"1\"");
    }
    let get = app.get(PATH).user("alice").send().await;
    assert_eq!(get.json["digest"], "daily");
    assert_eq!(etag(&get), "\"1\"");
    assert_eq!(stored_version(&app, "alice").await, Some(1));
    // A weak tag never matches (strong comparison); a list matches any of its tags.
    let weak = app
        .patch(PATH)
        .user("alice")
        .header("if-match", "W/\"1\"")
        .json(&json!({"digest": "weekly"}))
        .send()
        .await;
    assert_eq!(weak.status, StatusCode::PRECONDITION_FAILED);
    let listed = app
        .put(PATH)
        .user("alice")
        .header("if-match", "\"7\", \"1\"")
        .json(&custom())
        .send()
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.json);
    assert_eq!(etag(&listed), "\"2\"");
    // `*` matches any current document, stored or not.
    let any = app
        .patch(PATH)
        .user("alice")
        .header("if-match", "*")
        .json(&json!({"digest": "off"}))
        .send()
        .await;
    assert_eq!(any.status, StatusCode::OK);
    assert_eq!(etag(&any), "\"3\"");
    let any_new = app
        .patch(PATH)
        .user("bob")
        .header("if-match", "*")
        .json(&json!({"digest": "weekly"}))
        .send()
        .await;
    assert_eq!(any_new.status, StatusCode::OK);
    assert_eq!(etag(&any_new), "\"1\"");
    // A stale If-Match on a user with nothing stored.
    let ahead = app
        .put(PATH)
        .user("carol")
        .header("if-match", "\"1\"")
        .json(&custom())
        .send()
        .await;
    assert_eq!(ahead.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(etag(&ahead), "\"0\"");
    assert_eq!(stored_version(&app, "carol").await, None);
    // A malformed If-Match names the header.
    let malformed = app
        .patch(PATH)
        .user("alice")
        .header("if-match", "3")
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.field_paths(), ["If-Match"]);
    app.finish().await;
});

both_databases!(
    concurrent_updates_with_the_same_if_match,
    |app| async move {
        // First writes of a user with nothing stored (two inserts), then updates of a row.
        for round in 0..4 {
            let tag = format!("\"{round}\"");
            let one = app
            .patch(PATH)
            .user("alice")
            .header("if-match", &tag)
            .json(&json!({"digest": "daily", "locale": format!("fr-{}", ["CA", "BE", "CH", "FR"][round])}))
            .send();
            let two = app
            .patch(PATH)
            .user("alice")
            .header("if-match", &tag)
            .json(&json!({"digest": "weekly", "locale": format!("de-{}", ["AT", "CH", "DE", "LU"][round])}))
            .send();
            let (one, two) = tokio::join!(one, two);
            let mut statuses = [one.status, two.status];
            statuses.sort();
            assert_eq!(
                statuses,
                [StatusCode::OK, StatusCode::PRECONDITION_FAILED],
                "round {round}: {} / {}",
                one.json,
                two.json
            );
            let winner = if one.status == StatusCode::OK {
                &one
            } else {
                &two
            };
            let loser = if one.status == StatusCode::OK {
                &two
            } else {
                &one
            };
            let next = format!("\"{}\"", round + 1);
            assert_eq!(etag(winner), next);
            assert_eq!(etag(loser), next, "the 412 carries the winner's ETag");
            let get = app.get(PATH).user("alice").send().await;
            assert_eq!(get.json, winner.json, "the loser changed nothing");
            assert_eq!(stored_version(&app, "alice").await, Some(round as i64 + 1));
        }
        // Without If-Match neither is lost: both apply, one after the other.
        let one = app
            .patch(PATH)
            .user("alice")
            .json(&json!({"channels": {"sms": true}}))
            .send();
        let two = app
            .patch(PATH)
            .user("alice")
            .json(&json!({"channels": {"push": false}}))
            .send();
        let (one, two) = tokio::join!(one, two);
        assert_eq!((one.status, two.status), (StatusCode::OK, StatusCode::OK));
        let get = app.get(PATH).user("alice").send().await;
        assert_eq!(get.json["channels"]["sms"], true);
        assert_eq!(get.json["channels"]["push"], false);
        assert_eq!(etag(&get), "\"6\"");

        // The store's compare-and-set itself: of two writes expecting version 6, one succeeds.
        let db = &app.db.db;
        let categories = store::categories(db).await.expect("categories");
        let document = model::Preferences::defaults(&categories);
        assert!(store::replace(db, "alice", &document, 6)
            .await
            .expect("first"));
        assert!(!store::replace(db, "alice", &document, 6)
            .await
            .expect("second"));
        assert!(store::insert(db, "dave", &document)
            .await
            .expect("first insert"));
        assert!(!store::insert(db, "dave", &document)
            .await
            .expect("second insert"));
        assert_eq!(stored_version(&app, "alice").await, Some(7));
        assert_eq!(stored_version(&app, "dave").await, Some(1));
        app.finish().await;
    }
);

both_databases!(other_users_preferences_need_admin, |app| async move {
    let alice = app.put(PATH).user("alice").json(&custom()).send().await;
    assert_eq!(alice.status, StatusCode::OK);
    let of_alice = format!("{PATH}/alice");

    // Bob can neither read nor change them — 403 before the body is even looked at.
    let read = app.get(&of_alice).user("bob").send().await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    assert_eq!(read.error_code(), "forbidden");
    for call in [app.put(&of_alice), app.patch(&of_alice)] {
        let answer = call
            .user("bob")
            .json(&json!({"channels": {"sms": "not even valid"}}))
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_eq!(answer.error_code(), "forbidden");
    }
    let answer = app
        .put(&of_alice)
        .user("bob")
        .json(&defaults(None))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    // Roles other than admin do not help.
    let answer = app
        .get(&of_alice)
        .identity("bob", Some("bob@example.com"), "ops,support")
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let get = app.get(PATH).user("alice").send().await;
    assert_eq!(get.json, custom());
    assert_eq!(etag(&get), "\"1\"");

    // A user may name themself.
    let own = app.get(&format!("{PATH}/bob")).user("bob").send().await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.json, defaults(Some("bob@example.com")));
    let own = app
        .patch(&format!("{PATH}/bob"))
        .user("bob")
        .json(&json!({"digest": "weekly"}))
        .send()
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.json);
    assert_eq!(
        app.get(PATH).user("bob").send().await.json["digest"],
        "weekly"
    );

    // An admin reads and changes them, with If-Match.
    let read = app.get(&of_alice).admin("root").send().await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json, custom());
    assert_eq!(etag(&read), "\"1\"");
    let patched = app
        .patch(&of_alice)
        .admin("root")
        .header("if-match", "\"1\"")
        .json(&json!({"digest": "off"}))
        .send()
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    assert_eq!(etag(&patched), "\"2\"");
    let stale = app
        .put(&of_alice)
        .admin("root")
        .header("if-match", "\"1\"")
        .json(&custom())
        .send()
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let get = app.get(PATH).user("alice").send().await;
    assert_eq!(get.json["digest"], "off");
    assert_eq!(etag(&get), "\"2\"");
    // The security rule holds for admins too.
    let answer = app
        .patch(&of_alice)
        .admin("root")
        .json(&json!({"channels": {"email": false}}))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.error_code(), "security_notifications_required");

    // A user with nothing stored: defaults; their email is unknown to the admin's request,
    // and the admin's own email is never used for them.
    let carol = app.get(&format!("{PATH}/carol")).admin("root").send().await;
    assert_eq!(carol.status, StatusCode::OK);
    assert_eq!(carol.json, defaults(None));
    assert_eq!(etag(&carol), "\"0\"");
    let put = app
        .put(&format!("{PATH}/carol"))
        .admin("root")
        .json(&defaults(None))
        .send()
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(etag(&put), "\"0\"", "the defaults again: nothing written");
    assert_eq!(stored_version(&app, "carol").await, None);
    // ...and when carol reads them herself, her identity email fills in.
    let own = app.get(PATH).user("carol").send().await;
    assert_eq!(own.json["contacts"]["email"], "carol@example.com");
    app.finish().await;
});

both_databases!(identity_is_required, |app| async move {
    let of_alice = format!("{PATH}/alice");
    for path in [PATH, of_alice.as_str()] {
        for call in [app.get(path), app.put(path), app.patch(path)] {
            let answer = call.user("alice").unsigned().json(&custom()).send().await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(answer.error_code(), "unauthenticated");
        }
        for call in [app.get(path), app.put(path), app.patch(path)] {
            // Signed by gardien, but no identity: an anonymous request.
            let answer = call.json(&custom()).send().await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(answer.error_code(), "unauthenticated");
        }
        let answer = app.get(path).user("alice").tampered().send().await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.error_code(), "unauthenticated");
    }
    assert_eq!(stored_rows(&app).await, 0);
    app.finish().await;
});

/// Inserts a template of `category` when the templates table exists; `false` if it does not
/// (templates are built in parallel) or `templates::store::categories` does not list it yet.
async fn add_template_category(app: &TestApp, key: &str, category: &str) -> bool {
    let now = 1_700_000_000_000_000_i64;
    let inserted = sqlx::query(
        "INSERT INTO notification_templates (key, category, channel, current_version, deleted_at, created_at, updated_at) \
         VALUES ($1, $2, 'email', 1, NULL, $3, $4)",
    )
    .bind(key)
    .bind(category)
    .bind(now)
    .bind(now)
    .execute(&app.db.db.pool)
    .await;
    if let Err(error) = inserted {
        eprintln!("templates table not available ({error}); skipping template categories");
        return false;
    }
    let listed = gardien_backend::templates::store::categories(&app.db.db)
        .await
        .expect("categories");
    if !listed.iter().any(|c| c == category) {
        eprintln!("templates::store::categories does not list templates yet; skipping");
        return false;
    }
    true
}

both_databases!(categories_added_by_templates_appear, |app| async move {
    let stored = app.put(PATH).user("alice").json(&custom()).send().await;
    assert_eq!(stored.status, StatusCode::OK);
    if !add_template_category(&app, "weekly-newsletter", "newsletter").await {
        app.finish().await;
        return;
    }
    // In the defaults and in a document stored before the category existed: on everywhere.
    let fresh = app.get(PATH).user("bob").send().await;
    assert_eq!(fresh.json["categories"]["newsletter"], on());
    let get = app.get(PATH).user("alice").send().await;
    assert_eq!(get.json["categories"]["newsletter"], on());
    assert_eq!(etag(&get), "\"1\"", "reading does not write");
    // It can be changed like any other.
    let patch = app
        .patch(PATH)
        .user("alice")
        .json(&json!({"categories": {"newsletter": {"sms": false, "push": false}}}))
        .send()
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.json);
    assert_eq!(
        patch.json["categories"]["newsletter"],
        json!({"email": true, "sms": false, "push": false, "in_app": true})
    );
    // A PUT may leave it out (it takes its default) or set it.
    let put = app.put(PATH).user("alice").json(&custom()).send().await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.json["categories"]["newsletter"], on());
    let put = app
        .put(PATH)
        .user("alice")
        .json(&with(|b| b["categories"]["newsletter"] = off()))
        .send()
        .await;
    assert_eq!(put.json["categories"]["newsletter"], off());
    // But must be complete when given.
    let partial = app
        .put(PATH)
        .user("alice")
        .json(&with(|b| {
            b["categories"]["newsletter"] = json!({"email": true})
        }))
        .send()
        .await;
    assert_eq!(partial.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        partial.field_paths(),
        [
            "categories.newsletter.sms",
            "categories.newsletter.push",
            "categories.newsletter.in_app"
        ]
    );
    // Delivery sees it.
    let effective = store::effective(&app.db.db, "alice", None)
        .await
        .expect("effective");
    assert!(!effective.allows("newsletter", model::Channel::Email));

    // When its last template is deleted the category disappears (and is refused), but the
    // stored switches come back with the category.
    let deleted = sqlx::query("UPDATE notification_templates SET deleted_at = $1 WHERE key = $2")
        .bind(1_700_000_000_000_001_i64)
        .bind("weekly-newsletter")
        .execute(&app.db.db.pool)
        .await
        .expect("soft delete");
    assert_eq!(deleted.rows_affected(), 1);
    let get = app.get(PATH).user("alice").send().await;
    assert!(
        get.json["categories"].get("newsletter").is_none(),
        "{}",
        get.json
    );
    let refused = app
        .patch(PATH)
        .user("alice")
        .json(&json!({"categories": {"newsletter": {"email": true}}}))
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.field_paths(), ["categories.newsletter"]);
    sqlx::query("UPDATE notification_templates SET deleted_at = NULL WHERE key = $1")
        .bind("weekly-newsletter")
        .execute(&app.db.db.pool)
        .await
        .expect("undelete");
    let get = app.get(PATH).user("alice").send().await;
    assert_eq!(get.json["categories"]["newsletter"], off());
    app.finish().await;
});

both_databases!(delivery_reads_the_effective_preferences, |app| async move {
    let db = &app.db.db;
    let defaults_doc = store::effective(db, "alice", Some("alice@example.com"))
        .await
        .expect("effective");
    assert_eq!(
        serde_json::to_value(&defaults_doc).expect("json"),
        defaults(Some("alice@example.com"))
    );
    assert!(defaults_doc.allows("security", model::Channel::Email));
    assert!(!defaults_doc.allows("account", model::Channel::Sms));
    assert!(!defaults_doc.allows("marketing", model::Channel::Email));
    assert_eq!(stored_rows(&app).await, 0);

    app.put(PATH).user("alice").json(&custom()).send().await;
    let stored = store::effective(db, "alice", Some("alice@example.com"))
        .await
        .expect("effective");
    assert_eq!(serde_json::to_value(&stored).expect("json"), custom());
    assert_eq!(stored.contacts.phone.as_deref(), Some("+33612345678"));
    assert!(stored.allows("marketing", model::Channel::Email));
    assert!(!stored.allows("reports", model::Channel::Email));
    let quiet = stored.quiet_hours.expect("quiet hours");
    assert!(quiet.covers("2025-01-10T22:30:00Z".parse().expect("ts")));
    assert!(!quiet.covers("2025-01-10T12:00:00Z".parse().expect("ts")));

    // contacts.email following the identity resolves to whatever identity delivery passes.
    app.patch(PATH)
        .user("alice")
        .json(&json!({"contacts": {"email": null}}))
        .send()
        .await;
    let follows = store::effective(db, "alice", Some("alice@new.example"))
        .await
        .expect("effective");
    assert_eq!(follows.contacts.email.as_deref(), Some("alice@new.example"));
    app.finish().await;
});

both_databases!(openapi_documents_the_preferences, |app| async move {
    let doc = app.get("/openapi.json").unsigned().send().await.json;
    let own = &doc["paths"][PATH];
    let other = &doc["paths"][format!("{PATH}/{{user_id}}")];
    for method in ["get", "put", "patch"] {
        assert!(own[method].is_object(), "{method} {PATH}");
        assert!(other[method].is_object(), "{method} {PATH}/{{user_id}}");
    }
    assert!(other["get"]["responses"]["403"].is_object());
    for status in ["400", "401", "409", "412", "413", "415", "422", "500"] {
        assert!(own["put"]["responses"][status].is_object(), "PUT {status}");
        assert!(
            own["patch"]["responses"][status].is_object(),
            "PATCH {status}"
        );
    }
    assert!(own["get"]["responses"]["200"]["headers"]["ETag"].is_object());
    assert!(own["patch"]["requestBody"]["content"]["application/merge-patch+json"].is_object());
    let schemas = &doc["components"]["schemas"];
    let preferences = &schemas["Preferences"];
    assert_eq!(preferences["additionalProperties"], false);
    let mut required: Vec<&str> = preferences["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort_unstable();
    assert_eq!(
        required,
        [
            "categories",
            "channels",
            "contacts",
            "digest",
            "locale",
            "quiet_hours"
        ]
    );
    let categories = &preferences["properties"]["categories"];
    assert_eq!(
        categories["additionalProperties"]["$ref"],
        "#/components/schemas/ChannelSwitches"
    );
    assert_eq!(
        categories["required"],
        json!(["security", "account", "reports", "marketing"])
    );
    assert_eq!(schemas["ChannelSwitches"]["additionalProperties"], false);
    assert_eq!(schemas["Contacts"]["required"], json!(["email", "phone"]));
    assert_eq!(schemas["Digest"]["enum"], json!(["off", "daily", "weekly"]));
    assert_eq!(schemas["PreferencesPatch"]["additionalProperties"], false);
    app.finish().await;
});
