//! Notification templates on SQLite and PostgreSQL: create, read, list, replace, soft
//! delete (and re-create), versions and restore, If-Match, preview with locale fallback,
//! HTML escaping of the html part only, strict rendering, save-time validation (syntax with
//! line and column, undeclared variables, shapes, sms length), the admin role, unknown keys,
//! duplicates, and `store::categories`.

mod support;

use axum::http::StatusCode;
use gardien_backend::templates::store;
use serde_json::{json, Value};
use support::*;

const BASE: &str = "/api/notifications/templates";

/// An email template in `en` and `fr` using `name`.
fn welcome(key: &str, category: &str) -> Value {
    json!({
        "key": key,
        "category": category,
        "channel": "email",
        "default_locale": "en",
        "variables": ["name"],
        "locales": {
            "en": { "email": {
                "subject": "Welcome {{ name }}",
                "html": "<p>Hello {{ name }}</p>",
                "text": "Hello {{ name }}"
            }},
            "fr": { "email": {
                "subject": "Bienvenue {{ name }}",
                "html": "<p>Bonjour {{ name }}</p>",
                "text": "Bonjour {{ name }}"
            }}
        }
    })
}

/// An sms template in `en` with the given text and variables.
fn sms(key: &str, text: &str, variables: Value) -> Value {
    json!({
        "key": key,
        "category": "security",
        "channel": "sms",
        "default_locale": "en",
        "variables": variables,
        "locales": { "en": { "sms": { "text": text } } }
    })
}

/// The create body without its key: a `PUT` body.
fn replace_body(create: &Value) -> Value {
    let mut body = create.clone();
    body.as_object_mut().expect("object").remove("key");
    body
}

async fn create(app: &TestApp, body: &Value) -> Answer {
    let answer = app.post(BASE).admin("root").json(body).send().await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    answer
}

async fn put(app: &TestApp, key: &str, body: &Value) -> Answer {
    app.put(&format!("{BASE}/{key}"))
        .admin("editor")
        .json(body)
        .send()
        .await
}

async fn preview(app: &TestApp, key: &str, body: &Value) -> Answer {
    app.post(&format!("{BASE}/{key}/preview"))
        .admin("root")
        .json(body)
        .send()
        .await
}

/// A call as a plain user, a user with other roles, nobody, or unsigned.
fn as_who<'a>(call: Call<'a>, who: &str) -> Call<'a> {
    match who {
        "user" => call.user("alice"),
        "ops" => call.identity("bob", Some("bob@example.com"), "ops,support"),
        "none" => call,
        _ => call.user("alice").unsigned(),
    }
}

fn versions_of(answer: &Answer) -> Vec<(i64, String, String)> {
    answer.json["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions: {}", answer.json))
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().expect("version"),
                v["summary"].as_str().expect("summary").to_owned(),
                v["created_by"].as_str().expect("created_by").to_owned(),
            )
        })
        .collect()
}

/// Asserts a `400 validation_failed` whose single field is `path` with a message containing
/// each of `parts`.
fn assert_field(answer: &Answer, path: &str, parts: &[&str]) {
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
    assert_eq!(answer.error_code(), "validation_failed");
    assert_eq!(
        answer.field_paths(),
        vec![path.to_owned()],
        "{}",
        answer.json
    );
    let message = answer.json["error"]["fields"][0]["message"]
        .as_str()
        .expect("message");
    for part in parts {
        assert!(message.contains(part), "`{part}` not in `{message}`");
    }
}

both_databases!(create_get_list_update_delete, |app| async move {
    let body = welcome("welcome", "account");
    let created = create(&app, &body).await;
    assert_eq!(
        created.header("location").as_deref(),
        Some("/api/notifications/templates/welcome")
    );
    assert_eq!(created.header("etag").as_deref(), Some("\"1\""));
    assert_eq!(created.json["key"], "welcome");
    assert_eq!(created.json["category"], "account");
    assert_eq!(created.json["channel"], "email");
    assert_eq!(created.json["version"], 1);
    assert_eq!(created.json["default_locale"], "en");
    assert_eq!(created.json["variables"], json!(["name"]));
    assert_eq!(created.json["locales"], body["locales"]);
    assert_eq!(created.json["updated_by"], "root");
    assert!(created.json["created_at"]
        .as_str()
        .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()));

    let got = app
        .get(&format!("{BASE}/welcome"))
        .admin("root")
        .send()
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("etag").as_deref(), Some("\"1\""));
    assert_eq!(got.json, created.json);

    create(&app, &sms("otp", "Code {{ code }}", json!(["code"]))).await;
    let list = app.get(BASE).admin("root").send().await;
    assert_eq!(list.status, StatusCode::OK);
    let templates = list.json["templates"].as_array().expect("templates");
    assert_eq!(templates.len(), 2);
    assert_eq!(templates[0]["key"], "otp");
    assert_eq!(templates[1]["key"], "welcome");
    assert_eq!(templates[1]["category"], "account");
    assert_eq!(templates[1]["channel"], "email");
    assert_eq!(templates[1]["default_locale"], "en");
    assert_eq!(templates[1]["locales"], json!(["en", "fr"]));
    assert_eq!(templates[1]["version"], 1);
    assert_eq!(templates[1]["updated_at"], created.json["updated_at"]);

    let keys = |answer: &Answer| -> Vec<String> {
        answer.json["templates"]
            .as_array()
            .expect("templates")
            .iter()
            .map(|t| t["key"].as_str().expect("key").to_owned())
            .collect()
    };
    let by_channel = app
        .get(&format!("{BASE}?channel=sms"))
        .admin("root")
        .send()
        .await;
    assert_eq!(keys(&by_channel), vec!["otp"]);
    let by_category = app
        .get(&format!("{BASE}?category=account"))
        .admin("root")
        .send()
        .await;
    assert_eq!(keys(&by_category), vec!["welcome"]);
    let both = app
        .get(&format!("{BASE}?category=account&channel=sms"))
        .admin("root")
        .send()
        .await;
    assert_eq!(keys(&both), Vec::<String>::new());

    let mut changed = replace_body(&body);
    changed["locales"]["en"]["email"]["text"] = json!("Hi {{ name }}");
    let updated = put(&app, "welcome", &changed).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.json);
    assert_eq!(updated.header("etag").as_deref(), Some("\"2\""));
    assert_eq!(updated.json["version"], 2);
    assert_eq!(updated.json["updated_by"], "editor");
    assert_eq!(
        updated.json["locales"]["en"]["email"]["text"],
        "Hi {{ name }}"
    );
    assert_eq!(updated.json["created_at"], created.json["created_at"]);

    // The same content again changes nothing: no new version.
    let again = put(&app, "welcome", &changed).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json["version"], 2);
    let got = app
        .get(&format!("{BASE}/welcome"))
        .admin("root")
        .send()
        .await;
    assert_eq!(got.json["version"], 2);
    assert_eq!(got.json["locales"]["en"]["email"]["text"], "Hi {{ name }}");

    let deleted = app
        .delete(&format!("{BASE}/welcome"))
        .admin("root")
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.bytes.is_empty());
    for answer in [
        app.get(&format!("{BASE}/welcome"))
            .admin("root")
            .send()
            .await,
        app.get(&format!("{BASE}/welcome/versions"))
            .admin("root")
            .send()
            .await,
        put(&app, "welcome", &changed).await,
        app.delete(&format!("{BASE}/welcome"))
            .admin("root")
            .send()
            .await,
        preview(&app, "welcome", &json!({})).await,
    ] {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.json);
        assert_eq!(answer.error_code(), "not_found");
    }
    assert_eq!(keys(&app.get(BASE).admin("root").send().await), vec!["otp"]);
    assert_eq!(
        store::current(&app.db.db, "welcome")
            .await
            .expect("current"),
        None
    );
    app.finish().await;
});

both_databases!(
    deleted_key_may_be_created_again_and_keeps_its_history,
    |app| async move {
        let body = welcome("welcome", "account");
        create(&app, &body).await;
        let mut changed = replace_body(&body);
        changed["locales"]["en"]["email"]["subject"] = json!("Hi {{ name }}");
        assert_eq!(put(&app, "welcome", &changed).await.status, StatusCode::OK);
        assert_eq!(
            app.delete(&format!("{BASE}/welcome"))
                .admin("root")
                .send()
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        // Versions stay in the database while the template is deleted.
        let rows = sqlx::query("SELECT version FROM notification_template_versions WHERE key = $1")
            .bind("welcome")
            .fetch_all(&app.db.db.pool)
            .await
            .expect("versions");
        assert_eq!(rows.len(), 2);

        let again = sms("welcome", "Welcome {{ name }}", json!(["name"]));
        let created = create(&app, &again).await;
        assert_eq!(created.header("etag").as_deref(), Some("\"3\""));
        assert_eq!(created.json["version"], 3);
        assert_eq!(created.json["channel"], "sms");
        assert_eq!(created.json["category"], "security");
        let versions = app
            .get(&format!("{BASE}/welcome/versions"))
            .admin("root")
            .send()
            .await;
        assert_eq!(versions.status, StatusCode::OK);
        assert_eq!(versions.json["current_version"], 3);
        assert_eq!(
            versions_of(&versions),
            vec![
                (1, "created".to_owned(), "root".to_owned()),
                (2, "updated".to_owned(), "editor".to_owned()),
                (3, "re-created after deletion".to_owned(), "root".to_owned()),
            ]
        );
        // A live key is a conflict.
        let duplicate = app.post(BASE).admin("root").json(&again).send().await;
        assert_eq!(duplicate.status, StatusCode::CONFLICT);
        assert_eq!(duplicate.error_code(), "conflict");
        // An email version cannot be restored over what is now an sms template.
        let restore = app
            .post(&format!("{BASE}/welcome/versions/1/restore"))
            .admin("root")
            .send()
            .await;
        assert_eq!(
            restore.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            restore.json
        );
        assert_eq!(restore.error_code(), "invalid_version");
        assert_eq!(restore.field_paths(), vec!["locales.en", "locales.fr"]);
        app.finish().await;
    }
);

both_databases!(duplicate_key_is_a_conflict, |app| async move {
    create(&app, &welcome("welcome", "account")).await;
    let duplicate = app
        .post(BASE)
        .admin("root")
        .json(&welcome("welcome", "marketing"))
        .send()
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert_eq!(duplicate.error_code(), "conflict");
    let got = app
        .get(&format!("{BASE}/welcome"))
        .admin("root")
        .send()
        .await;
    assert_eq!(got.json["category"], "account");
    assert_eq!(got.json["version"], 1);
    app.finish().await;
});

both_databases!(
    versions_grow_and_restore_makes_a_new_version,
    |app| async move {
        let body = welcome("welcome", "account");
        create(&app, &body).await;
        let mut v2 = replace_body(&body);
        v2["locales"]["en"]["email"]["text"] = json!("Version two, {{ name }}");
        assert_eq!(put(&app, "welcome", &v2).await.json["version"], 2);
        let mut v3 = v2.clone();
        v3["category"] = json!("marketing");
        v3["variables"] = json!(["name", "offer"]);
        v3["locales"]["en"]["email"]["text"] = json!("Version three, {{ name }}: {{ offer }}");
        let third = put(&app, "welcome", &v3).await;
        assert_eq!(third.json["version"], 3);
        assert_eq!(third.json["category"], "marketing");

        let versions = app
            .get(&format!("{BASE}/welcome/versions"))
            .admin("root")
            .send()
            .await;
        assert_eq!(versions.status, StatusCode::OK);
        assert_eq!(versions.json["key"], "welcome");
        assert_eq!(versions.json["current_version"], 3);
        assert_eq!(
            versions_of(&versions),
            vec![
                (1, "created".to_owned(), "root".to_owned()),
                (2, "updated".to_owned(), "editor".to_owned()),
                (3, "updated".to_owned(), "editor".to_owned()),
            ]
        );
        assert!(versions.json["versions"][0]["created_at"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()));

        let one = app
            .get(&format!("{BASE}/welcome/versions/1"))
            .admin("root")
            .send()
            .await;
        assert_eq!(one.status, StatusCode::OK);
        assert_eq!(one.json["version"], 1);
        assert_eq!(one.json["summary"], "created");
        assert_eq!(one.json["category"], "account");
        assert_eq!(one.json["variables"], json!(["name"]));
        assert_eq!(one.json["locales"], body["locales"]);

        let restored = app
            .post(&format!("{BASE}/welcome/versions/1/restore"))
            .admin("auditor")
            .send()
            .await;
        assert_eq!(restored.status, StatusCode::OK, "{}", restored.json);
        assert_eq!(restored.header("etag").as_deref(), Some("\"4\""));
        assert_eq!(restored.json["version"], 4);
        assert_eq!(restored.json["category"], "account");
        assert_eq!(restored.json["variables"], json!(["name"]));
        assert_eq!(restored.json["locales"], body["locales"]);
        assert_eq!(restored.json["updated_by"], "auditor");
        let current = app
            .get(&format!("{BASE}/welcome"))
            .admin("root")
            .send()
            .await;
        assert_eq!(current.json, restored.json);

        let versions = app
            .get(&format!("{BASE}/welcome/versions"))
            .admin("root")
            .send()
            .await;
        assert_eq!(versions.json["current_version"], 4);
        assert_eq!(
            versions_of(&versions).last().cloned(),
            Some((
                4,
                "restored from version 1".to_owned(),
                "auditor".to_owned()
            ))
        );
        // History is never rewritten: versions 2 and 3 keep their content.
        let three = app
            .get(&format!("{BASE}/welcome/versions/3"))
            .admin("root")
            .send()
            .await;
        assert_eq!(
            three.json["locales"]["en"]["email"]["text"],
            "Version three, {{ name }}: {{ offer }}"
        );
        assert_eq!(three.json["category"], "marketing");

        // Restoring the current content again makes no version.
        let same = app
            .post(&format!("{BASE}/welcome/versions/4/restore"))
            .admin("root")
            .send()
            .await;
        assert_eq!(same.status, StatusCode::OK);
        assert_eq!(same.json["version"], 4);

        for n in ["99", "0"] {
            let unknown = app
                .post(&format!("{BASE}/welcome/versions/{n}/restore"))
                .admin("root")
                .send()
                .await;
            let expected = if n == "0" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(unknown.status, expected, "{n}: {}", unknown.json);
        }
        let unknown = app
            .get(&format!("{BASE}/welcome/versions/99"))
            .admin("root")
            .send()
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.error_code(), "not_found");
        let not_a_number = app
            .post(&format!("{BASE}/welcome/versions/abc/restore"))
            .admin("root")
            .send()
            .await;
        assert_eq!(not_a_number.status, StatusCode::BAD_REQUEST);
        assert_eq!(not_a_number.error_code(), "validation_failed");
        assert_eq!(not_a_number.field_paths(), vec!["n"]);
        let after = app
            .get(&format!("{BASE}/welcome/versions"))
            .admin("root")
            .send()
            .await;
        assert_eq!(after.json["versions"].as_array().map(Vec::len), Some(4));
        app.finish().await;
    }
);

both_databases!(if_match_makes_changes_conditional, |app| async move {
    let body = welcome("welcome", "account");
    create(&app, &body).await;
    let mut v2 = replace_body(&body);
    v2["locales"]["en"]["email"]["text"] = json!("Two {{ name }}");
    let updated = app
        .put(&format!("{BASE}/welcome"))
        .admin("root")
        .header("if-match", "\"1\"")
        .json(&v2)
        .send()
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.json);
    assert_eq!(updated.header("etag").as_deref(), Some("\"2\""));

    let mut stale = replace_body(&body);
    stale["locales"]["en"]["email"]["text"] = json!("Stale {{ name }}");
    for tag in ["\"1\"", "W/\"2\"", "garbage"] {
        let refused = app
            .put(&format!("{BASE}/welcome"))
            .admin("root")
            .header("if-match", tag)
            .json(&stale)
            .send()
            .await;
        assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED, "{tag}");
        assert_eq!(refused.error_code(), "precondition_failed");
    }
    let restore = app
        .post(&format!("{BASE}/welcome/versions/1/restore"))
        .admin("root")
        .header("if-match", "\"1\"")
        .send()
        .await;
    assert_eq!(restore.status, StatusCode::PRECONDITION_FAILED);
    let delete = app
        .delete(&format!("{BASE}/welcome"))
        .admin("root")
        .header("if-match", "\"1\"")
        .send()
        .await;
    assert_eq!(delete.status, StatusCode::PRECONDITION_FAILED);
    let got = app
        .get(&format!("{BASE}/welcome"))
        .admin("root")
        .send()
        .await;
    assert_eq!(got.json["version"], 2);
    assert_eq!(got.json["locales"]["en"]["email"]["text"], "Two {{ name }}");

    let any = app
        .put(&format!("{BASE}/welcome"))
        .admin("root")
        .header("if-match", "*")
        .json(&stale)
        .send()
        .await;
    assert_eq!(any.status, StatusCode::OK);
    assert_eq!(any.json["version"], 3);
    let listed = app
        .put(&format!("{BASE}/welcome"))
        .admin("root")
        .header("if-match", "\"1\", \"3\"")
        .json(&v2)
        .send()
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json["version"], 4);
    let delete = app
        .delete(&format!("{BASE}/welcome"))
        .admin("root")
        .header("if-match", "\"4\"")
        .send()
        .await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT);
    app.finish().await;
});

both_databases!(
    preview_falls_back_from_region_to_language_to_default,
    |app| async move {
        let mut body = welcome("welcome", "account");
        body["locales"]["fr-CA"] = json!({ "email": {
            "subject": "Allo {{ name }}",
            "html": "<p>Allo {{ name }}</p>",
            "text": "Allo {{ name }}"
        }});
        create(&app, &body).await;
        let cases = [
            (
                json!({"locale": "fr-CA", "variables": {"name": "Zoé"}}),
                "fr-CA",
                "Allo Zoé",
            ),
            (
                json!({"locale": "fr-BE", "variables": {"name": "Zoé"}}),
                "fr",
                "Bonjour Zoé",
            ),
            (
                json!({"locale": "FR-be", "variables": {"name": "Zoé"}}),
                "fr",
                "Bonjour Zoé",
            ),
            (
                json!({"locale": "fr", "variables": {"name": "Zoé"}}),
                "fr",
                "Bonjour Zoé",
            ),
            (
                json!({"locale": "de-DE", "variables": {"name": "Zoé"}}),
                "en",
                "Hello Zoé",
            ),
            (
                json!({"locale": "en-US", "variables": {"name": "Zoé"}}),
                "en",
                "Hello Zoé",
            ),
            (json!({"variables": {"name": "Zoé"}}), "en", "Hello Zoé"),
        ];
        for (request, locale, text) in cases {
            let answer = preview(&app, "welcome", &request).await;
            assert_eq!(answer.status, StatusCode::OK, "{request}: {}", answer.json);
            assert_eq!(answer.json["locale_used"], locale, "{request}");
            assert_eq!(answer.json["text"], text, "{request}");
            assert_eq!(answer.json["missing_variables"], json!([]));
        }
        let full = preview(
            &app,
            "welcome",
            &json!({"locale": "fr-CA", "variables": {"name": "Zoé"}}),
        )
        .await;
        assert_eq!(
            full.json,
            json!({
                "locale_used": "fr-CA",
                "subject": "Allo Zoé",
                "html": "<p>Allo Zoé</p>",
                "text": "Allo Zoé",
                "missing_variables": []
            })
        );

        // The default locale is the last resort even when it is not the first one.
        let mut other = welcome("other", "account");
        other["default_locale"] = json!("fr");
        create(&app, &other).await;
        let answer = preview(
            &app,
            "other",
            &json!({"locale": "de", "variables": {"name": "A"}}),
        )
        .await;
        assert_eq!(answer.json["locale_used"], "fr");

        for locale in ["x", "fr_CA", "", "fr--CA"] {
            let bad = preview(&app, "welcome", &json!({"locale": locale})).await;
            assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{locale}");
            assert_eq!(bad.field_paths(), vec!["locale"]);
        }
        let unknown_field = preview(&app, "welcome", &json!({"locale": "en", "vars": {}})).await;
        assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
        assert_eq!(unknown_field.error_code(), "validation_failed");
        let not_an_object = preview(&app, "welcome", &json!({"variables": [1]})).await;
        assert_eq!(not_an_object.status, StatusCode::BAD_REQUEST);
        assert_eq!(not_an_object.field_paths(), vec!["variables"]);
        let missing = preview(&app, "nothing", &json!({})).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        app.finish().await;
    }
);

both_databases!(
    html_is_escaped_but_subject_and_text_are_not,
    |app| async move {
        create(&app, &welcome("welcome", "account")).await;
        let answer = preview(
            &app,
            "welcome",
            &json!({"locale": "en", "variables": {"name": "<b>Tom & \"Jerry\"</b>\nNext"}}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        assert_eq!(
            answer.json["html"],
            "<p>Hello &lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;&#x2f;b&gt;\nNext</p>"
        );
        assert_eq!(answer.json["text"], "Hello <b>Tom & \"Jerry\"</b>\nNext");
        // The subject is one line: the line break became a space.
        assert_eq!(
            answer.json["subject"],
            "Welcome <b>Tom & \"Jerry\"</b> Next"
        );
        app.finish().await;
    }
);

both_databases!(strict_rendering_and_missing_variables, |app| async move {
    let body = json!({
        "key": "receipt",
        "category": "billing",
        "channel": "email",
        "default_locale": "en",
        "variables": ["name", "code", "user", "note"],
        "locales": {
            "en": { "email": {
                "subject": "Receipt {{ code }}",
                "html": "<p>{{ name }}</p>",
                "text": "{{ name }}\n  {{ user.email }}"
            }},
            "fr": { "email": {
                "subject": "Reçu",
                "html": "<p>{{ name }}</p>",
                "text": "{{ name }}"
            }}
        }
    });
    create(&app, &body).await;

    // A declared variable the locale uses, not given: 422 naming it.
    let answer = preview(
        &app,
        "receipt",
        &json!({"locale": "en", "variables": {"name": "A", "user": {"email": "a@x"}}}),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.json
    );
    assert_eq!(answer.error_code(), "missing_variables");
    assert_eq!(answer.field_paths(), vec!["variables.code"]);
    let answer = preview(&app, "receipt", &json!({"locale": "en"})).await;
    assert_eq!(answer.error_code(), "missing_variables");
    assert_eq!(
        answer.field_paths(),
        vec!["variables.code", "variables.name", "variables.user"]
    );

    // Declared variables this locale does not use are reported, not fatal.
    let answer = preview(
        &app,
        "receipt",
        &json!({"locale": "fr", "variables": {"name": "A"}}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(
        answer.json["missing_variables"],
        json!(["code", "note", "user"])
    );
    assert_eq!(answer.json["text"], "A");

    // Strict: an undefined attribute is an error, with the part, line and column.
    let answer = preview(
        &app,
        "receipt",
        &json!({"locale": "en", "variables": {"name": "A", "code": "C1", "user": {}}}),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.json
    );
    assert_eq!(answer.error_code(), "render_failed");
    assert_eq!(answer.field_paths(), vec!["locales.en.email.text"]);
    let message = answer.json["error"]["fields"][0]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.starts_with("undefined value at line 2, column 6"),
        "{message}"
    );

    let answer = preview(
        &app,
        "receipt",
        &json!({"locale": "en", "variables": {"name": "A", "code": "C1", "user": {"email": "a@x"}, "extra": 1}}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["subject"], "Receipt C1");
    assert_eq!(answer.json["text"], "A\n  a@x");
    assert_eq!(answer.json["missing_variables"], json!(["note"]));

    // The library function delivery calls behaves the same.
    let stored = store::current(&app.db.db, "receipt")
        .await
        .expect("current")
        .expect("template");
    let rendered =
        gardien_backend::templates::render::render(&stored, "fr-CA", &json!({"name": "B"}))
            .expect("render");
    assert_eq!(rendered.locale_used, "fr");
    assert_eq!(rendered.subject.as_deref(), Some("Reçu"));
    assert_eq!(rendered.text, "B");
    assert_eq!(
        gardien_backend::templates::render::render(&stored, "en", &json!({"name": "B"})),
        Err(
            gardien_backend::templates::render::RenderError::MissingVariables(vec![
                "code".into(),
                "user".into()
            ])
        )
    );
    app.finish().await;
});

both_databases!(
    syntax_errors_are_refused_with_line_and_column,
    |app| async move {
        let mut body = welcome("broken", "account");
        body["locales"]["fr"]["email"]["html"] = json!("<p>\n  <b>{{ name </b>\n</p>");
        let answer = app.post(BASE).admin("root").json(&body).send().await;
        assert_field(
            &answer,
            "locales.fr.email.html",
            &["syntax error at line 2, column 15: unexpected `/`"],
        );
        let missing = app
            .get(&format!("{BASE}/broken"))
            .admin("root")
            .send()
            .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);

        // Several problems at once: every one is listed.
        body["locales"]["en"]["email"]["subject"] = json!("{% if name %}Hi");
        let answer = app.post(BASE).admin("root").json(&body).send().await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            answer.field_paths(),
            vec!["locales.en.email.subject", "locales.fr.email.html"]
        );
        let message = answer.json["error"]["fields"][0]["message"]
            .as_str()
            .expect("message");
        assert!(message.contains("line 1, column"), "{message}");

        // On replace too, and the template is unchanged.
        create(&app, &welcome("welcome", "account")).await;
        let mut changed = replace_body(&welcome("welcome", "account"));
        changed["locales"]["en"]["email"]["text"] = json!("Hello\n\n{{ name }} {% endfor %}");
        let answer = put(&app, "welcome", &changed).await;
        assert_field(
            &answer,
            "locales.en.email.text",
            &["syntax error", "line 3", "column"],
        );
        let got = app
            .get(&format!("{BASE}/welcome"))
            .admin("root")
            .send()
            .await;
        assert_eq!(got.json["version"], 1);
        app.finish().await;
    }
);

both_databases!(undeclared_variables_are_refused, |app| async move {
    let mut body = welcome("welcome", "account");
    body["locales"]["en"]["email"]["text"] = json!("Hello {{ name }}, use {{ coupon.code }}");
    let answer = app.post(BASE).admin("root").json(&body).send().await;
    assert_field(
        &answer,
        "locales.en.email.text",
        &["`coupon`", "not declared"],
    );

    // Loop variables, `set`, `loop` and globals such as `range` need no declaration.
    let mut body = welcome("welcome", "account");
    body["variables"] = json!(["name", "items"]);
    body["locales"]["en"]["email"]["text"] = json!(
        "{% set greeting = 'Hi' %}{{ greeting }} {{ name }}\n{% for item in items %}{{ loop.index }}. {{ item.label }}\n{% endfor %}{% for i in range(2) %}{{ i }}{% endfor %}"
    );
    let created = create(&app, &body).await;
    assert_eq!(created.json["variables"], json!(["name", "items"]));
    let answer = preview(
        &app,
        "welcome",
        &json!({"variables": {"name": "Ann", "items": [{"label": "a"}, {"label": "b"}]}}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["text"], "Hi Ann\n1. a\n2. b\n01");

    // Templates stand alone.
    let mut body = welcome("other", "account");
    body["locales"]["en"]["email"]["html"] = json!("{% include 'header.html' %}{{ name }}");
    let answer = app.post(BASE).admin("root").json(&body).send().await;
    assert_field(&answer, "locales.en.email.html", &["include"]);
    app.finish().await;
});

both_databases!(shapes_and_fields_are_validated, |app| async move {
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut b = welcome("Bad Key", "account");
                b["key"] = json!("Bad Key");
                b
            },
            "key",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["key"] = json!("");
                b
            },
            "key",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["key"] = json!("a".repeat(65));
                b
            },
            "key",
        ),
        (welcome("k", "Account!"), "category"),
        (welcome("k", &"c".repeat(33)), "category"),
        (
            {
                let mut b = welcome("k", "account");
                b["default_locale"] = json!("de");
                b
            },
            "default_locale",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["variables"] = json!(["name", "1st"]);
                b
            },
            "variables[1]",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["variables"] = json!(["name", "name"]);
                b
            },
            "variables[1]",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["locales"]["fr"] = json!({"sms": {"text": "x"}});
                b
            },
            "locales.fr",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["locales"]["fr"] = json!({});
                b
            },
            "locales.fr",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["locales"]["fr"]["sms"] = json!({"text": "x"});
                b
            },
            "locales.fr",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["locales"]["fr_FR"] = b["locales"]["fr"].clone();
                b
            },
            "locales.fr_FR",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["locales"]["FR"] = b["locales"]["fr"].clone();
                b
            },
            "locales.fr",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["locales"]["en"]["email"]["subject"] = json!("");
                b
            },
            "locales.en.email.subject",
        ),
        (sms("k", "", json!([])), "locales.en.sms.text"),
        (
            {
                let mut b = sms("k", "x", json!([]));
                b["locales"]["en"] = json!({"email": {"subject": "s", "html": "h", "text": "t"}});
                b
            },
            "locales.en",
        ),
    ];
    for (body, path) in cases {
        let answer = app.post(BASE).admin("root").json(&body).send().await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.json
        );
        assert_eq!(answer.error_code(), "validation_failed");
        assert_eq!(
            answer.field_paths(),
            vec![path.to_owned()],
            "{}",
            answer.json
        );
    }
    // serde's own refusals: unknown fields, wrong channel, missing fields, wrong types.
    let serde_cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut b = welcome("k", "account");
                b["extra"] = json!(1);
                b
            },
            "extra",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["channel"] = json!("push");
                b
            },
            "channel",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["locales"]["en"]["email"]["footer"] = json!("x");
                b
            },
            "locales.en.email.footer",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["locales"]["en"]["email"]
                    .as_object_mut()
                    .expect("email")
                    .remove("html");
                b
            },
            "locales.en.email",
        ),
        (
            {
                let mut b = welcome("k", "account");
                b["variables"] = json!("name");
                b
            },
            "variables",
        ),
    ];
    for (body, path) in serde_cases {
        let answer = app.post(BASE).admin("root").json(&body).send().await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.json
        );
        assert_eq!(answer.error_code(), "validation_failed");
        assert_eq!(
            answer.field_paths(),
            vec![path.to_owned()],
            "{}",
            answer.json
        );
    }
    let not_json = app
        .post(BASE)
        .admin("root")
        .raw("text/plain", b"{}".to_vec())
        .send()
        .await;
    assert_eq!(not_json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        app.get(BASE).admin("root").send().await.json["templates"],
        json!([])
    );

    // The channel of a template never changes.
    create(&app, &welcome("welcome", "account")).await;
    let as_sms = replace_body(&sms("welcome", "Hi {{ name }}", json!(["name"])));
    let answer = put(&app, "welcome", &as_sms).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.json
    );
    assert_eq!(answer.error_code(), "channel_immutable");
    // A PUT body has no key.
    let answer = put(&app, "welcome", &welcome("welcome", "account")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.field_paths(), vec!["key"]);

    // List filters are validated; unknown ones refused.
    for (query, path) in [
        ("channel=push", "channel"),
        ("category=Bad!", "category"),
        ("sort=key", "sort"),
        ("channel=sms&channel=email", "channel"),
    ] {
        let answer = app
            .get(&format!("{BASE}?{query}"))
            .admin("root")
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.field_paths(), vec![path.to_owned()], "{query}");
    }
    app.finish().await;
});

both_databases!(sms_length_is_limited, |app| async move {
    let at_limit = "a".repeat(1600);
    create(&app, &sms("limit", &at_limit, json!([]))).await;
    let over = "a".repeat(1601);
    let answer = app
        .post(BASE)
        .admin("root")
        .json(&sms("over", &over, json!([])))
        .send()
        .await;
    assert_field(&answer, "locales.en.sms.text", &["1601", "1600"]);
    // Statically: the literal text around expressions already exceeds the limit.
    let text = format!("{} {{{{ code }}}} {}", "a".repeat(800), "b".repeat(800));
    let answer = app
        .post(BASE)
        .admin("root")
        .json(&sms("over", &text, json!(["code"])))
        .send()
        .await;
    assert_field(&answer, "locales.en.sms.text", &["at least 1602"]);

    // Only rendering can tell: the preview refuses it.
    let text = format!("{}{{{{ code }}}}", "a".repeat(1590));
    create(&app, &sms("dynamic", &text, json!(["code"]))).await;
    let fits = preview(
        &app,
        "dynamic",
        &json!({"variables": {"code": "0123456789"}}),
    )
    .await;
    assert_eq!(fits.status, StatusCode::OK, "{}", fits.json);
    assert_eq!(
        fits.json["text"].as_str().map(|t| t.chars().count()),
        Some(1600)
    );
    assert_eq!(fits.json.get("subject"), None);
    assert_eq!(fits.json.get("html"), None);
    let answer = preview(
        &app,
        "dynamic",
        &json!({"variables": {"code": "0123456789X"}}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.error_code(), "sms_too_long");
    assert_eq!(answer.field_paths(), vec!["locales.en.sms.text"]);
    app.finish().await;
});

both_databases!(only_admins_may_touch_templates, |app| async move {
    create(&app, &welcome("welcome", "account")).await;
    let body = welcome("other", "account");
    let replace = replace_body(&body);
    let calls = |who: &'static str| {
        let (app, body, replace) = (&app, body.clone(), replace.clone());
        async move {
            vec![
                as_who(app.get(BASE), who).send().await,
                as_who(app.post(BASE), who).json(&body).send().await,
                as_who(app.get(&format!("{BASE}/welcome")), who)
                    .send()
                    .await,
                as_who(app.put(&format!("{BASE}/welcome")), who)
                    .json(&replace)
                    .send()
                    .await,
                as_who(app.delete(&format!("{BASE}/welcome")), who)
                    .send()
                    .await,
                as_who(app.get(&format!("{BASE}/welcome/versions")), who)
                    .send()
                    .await,
                as_who(app.get(&format!("{BASE}/welcome/versions/1")), who)
                    .send()
                    .await,
                as_who(app.post(&format!("{BASE}/welcome/versions/1/restore")), who)
                    .send()
                    .await,
                as_who(app.post(&format!("{BASE}/welcome/preview")), who)
                    .json(&json!({}))
                    .send()
                    .await,
            ]
        }
    };
    for (who, status, code) in [
        ("user", StatusCode::FORBIDDEN, "forbidden"),
        ("ops", StatusCode::FORBIDDEN, "forbidden"),
        ("none", StatusCode::UNAUTHORIZED, "unauthenticated"),
        ("unsigned", StatusCode::UNAUTHORIZED, "unauthenticated"),
    ] {
        for (i, answer) in calls(who).await.into_iter().enumerate() {
            assert_eq!(answer.status, status, "{who} #{i}: {}", answer.json);
            assert_eq!(answer.error_code(), code, "{who} #{i}");
        }
    }
    // Non-admins with an invalid body still get 403, not 400.
    let answer = app
        .post(BASE)
        .user("alice")
        .json(&json!({"nonsense": true}))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    // Nothing changed.
    let got = app
        .get(&format!("{BASE}/welcome"))
        .admin("root")
        .send()
        .await;
    assert_eq!(got.json["version"], 1);
    assert_eq!(
        app.get(&format!("{BASE}/other"))
            .admin("root")
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let admin_among_roles = app
        .get(&format!("{BASE}/welcome"))
        .identity("carol", None, "ops,admin")
        .send()
        .await;
    assert_eq!(admin_among_roles.status, StatusCode::OK);
    app.finish().await;
});

both_databases!(unknown_keys_are_not_found, |app| async move {
    let replace = replace_body(&welcome("ghost", "account"));
    let answers = vec![
        app.get(&format!("{BASE}/ghost")).admin("root").send().await,
        app.put(&format!("{BASE}/ghost"))
            .admin("root")
            .json(&replace)
            .send()
            .await,
        app.delete(&format!("{BASE}/ghost"))
            .admin("root")
            .send()
            .await,
        app.get(&format!("{BASE}/ghost/versions"))
            .admin("root")
            .send()
            .await,
        app.get(&format!("{BASE}/ghost/versions/1"))
            .admin("root")
            .send()
            .await,
        app.post(&format!("{BASE}/ghost/versions/1/restore"))
            .admin("root")
            .send()
            .await,
        app.post(&format!("{BASE}/ghost/preview"))
            .admin("root")
            .json(&json!({}))
            .send()
            .await,
        // A key that cannot exist is not found either.
        app.get(&format!("{BASE}/Not%20A%20Key"))
            .admin("root")
            .send()
            .await,
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "#{i}: {}",
            answer.json
        );
        assert_eq!(answer.error_code(), "not_found", "#{i}");
    }
    // PUT does not create.
    assert_eq!(
        store::current(&app.db.db, "ghost").await.expect("current"),
        None
    );
    app.finish().await;
});

both_databases!(categories_follow_templates, |app| async move {
    assert_eq!(
        store::categories(&app.db.db).await.expect("categories"),
        Vec::<String>::new()
    );
    create(&app, &welcome("welcome", "onboarding")).await;
    create(&app, &welcome("receipt", "billing")).await;
    create(&app, &welcome("invoice", "billing")).await;
    create(&app, &sms("otp", "Code {{ code }}", json!(["code"]))).await;
    assert_eq!(
        store::categories(&app.db.db).await.expect("categories"),
        vec!["billing", "onboarding", "security"]
    );
    // Deleting one of two templates of a category keeps it; deleting the last removes it.
    app.delete(&format!("{BASE}/receipt"))
        .admin("root")
        .send()
        .await;
    assert_eq!(
        store::categories(&app.db.db).await.expect("categories"),
        vec!["billing", "onboarding", "security"]
    );
    app.delete(&format!("{BASE}/invoice"))
        .admin("root")
        .send()
        .await;
    assert_eq!(
        store::categories(&app.db.db).await.expect("categories"),
        vec!["onboarding", "security"]
    );
    // A category change by PUT moves the template.
    let mut changed = replace_body(&welcome("welcome", "onboarding"));
    changed["category"] = json!("zz-news");
    assert_eq!(put(&app, "welcome", &changed).await.status, StatusCode::OK);
    assert_eq!(
        store::categories(&app.db.db).await.expect("categories"),
        vec!["security", "zz-news"]
    );
    // Re-creating a deleted key brings its category back.
    create(&app, &welcome("invoice", "billing")).await;
    assert_eq!(
        store::categories(&app.db.db).await.expect("categories"),
        vec!["billing", "security", "zz-news"]
    );
    app.finish().await;
});

both_databases!(
    concurrent_changes_each_make_their_own_version,
    |app| async move {
        let body = welcome("welcome", "account");
        create(&app, &body).await;
        let bodies: Vec<Value> = (0..6)
            .map(|i| {
                let mut b = replace_body(&body);
                b["locales"]["en"]["email"]["text"] = json!(format!("Change {i} {{{{ name }}}}"));
                b
            })
            .collect();
        let (a, b, c, d, e, f) = tokio::join!(
            put(&app, "welcome", &bodies[0]),
            put(&app, "welcome", &bodies[1]),
            put(&app, "welcome", &bodies[2]),
            put(&app, "welcome", &bodies[3]),
            put(&app, "welcome", &bodies[4]),
            put(&app, "welcome", &bodies[5]),
        );
        let mut versions: Vec<i64> = [a, b, c, d, e, f]
            .iter()
            .map(|answer| {
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
                answer.json["version"].as_i64().expect("version")
            })
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, vec![2, 3, 4, 5, 6, 7]);
        let history = app
            .get(&format!("{BASE}/welcome/versions"))
            .admin("root")
            .send()
            .await;
        assert_eq!(history.json["current_version"], 7);
        assert_eq!(history.json["versions"].as_array().map(Vec::len), Some(7));
        app.finish().await;
    }
);

/// The OpenAPI document lists every endpoint with every status it can answer.
#[tokio::test]
async fn openapi_documents_every_template_endpoint() {
    let app = TestApp::new(Engine::Sqlite).await;
    let document = app.get("/openapi.json").unsigned().send().await.json;
    let common = ["400", "401", "403", "500"];
    let expected: [(&str, &str, &[&str]); 9] = [
        ("/api/notifications/templates", "get", &["200"]),
        (
            "/api/notifications/templates",
            "post",
            &["201", "409", "413", "415"],
        ),
        ("/api/notifications/templates/{key}", "get", &["200", "404"]),
        (
            "/api/notifications/templates/{key}",
            "put",
            &["200", "404", "412", "413", "415", "422"],
        ),
        (
            "/api/notifications/templates/{key}",
            "delete",
            &["204", "404", "412"],
        ),
        (
            "/api/notifications/templates/{key}/versions",
            "get",
            &["200", "404"],
        ),
        (
            "/api/notifications/templates/{key}/versions/{n}",
            "get",
            &["200", "404"],
        ),
        (
            "/api/notifications/templates/{key}/versions/{n}/restore",
            "post",
            &["200", "404", "412", "422"],
        ),
        (
            "/api/notifications/templates/{key}/preview",
            "post",
            &["200", "404", "413", "415", "422"],
        ),
    ];
    for (path, method, statuses) in expected {
        let responses = document["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is not documented"));
        let mut documented: Vec<&str> = responses.keys().map(String::as_str).collect();
        documented.sort_unstable();
        let mut wanted: Vec<&str> = common.iter().chain(statuses).copied().collect();
        wanted.sort_unstable();
        assert_eq!(documented, wanted, "{method} {path}");
    }
    let schemas = &document["components"]["schemas"];
    for input in [
        "CreateTemplate",
        "ReplaceTemplate",
        "LocaleContent",
        "EmailContent",
        "SmsContent",
        "PreviewRequest",
    ] {
        assert_eq!(
            schemas[input]["additionalProperties"],
            json!(false),
            "{input}"
        );
    }
    assert_eq!(
        schemas["TemplateView"]["properties"]["updated_at"]["format"],
        "date-time"
    );
    assert_eq!(schemas["Channel"]["enum"], json!(["email", "sms"]));
    app.finish().await;
}
