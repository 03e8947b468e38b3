use serde_json::json;

use super::*;
use crate::model::UserId;

fn field_of(result: Result<impl std::fmt::Debug>) -> &'static str {
    match result {
        Err(Error::Validation { field, .. }) => field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn display_names() {
    assert_eq!(
        display_name("  Ada Lovelace\u{3000}").unwrap(),
        "Ada Lovelace"
    );
    assert_eq!(display_name("émile 🚀").unwrap(), "émile 🚀");
    let longest = "x".repeat(DISPLAY_NAME_MAX_CHARS);
    assert_eq!(display_name(&longest).unwrap(), longest);
    // Characters, not bytes: 255 three-byte characters fit.
    display_name(&"€".repeat(DISPLAY_NAME_MAX_CHARS)).unwrap();
    for bad in [
        String::new(),
        " \t\n\u{a0}".to_owned(),
        "a\0b".to_owned(),
        "a\tb".to_owned(),
        "line\nbreak".to_owned(),
        "del\u{7f}".to_owned(),
        "c1\u{85}x".to_owned(),
        "x".repeat(DISPLAY_NAME_MAX_CHARS + 1),
    ] {
        assert_eq!(field_of(display_name(&bad)), "display_name", "{bad:?}");
    }
    assert_eq!(default_display_name("ada.l+x@example.com"), "ada.l+x");
}

#[test]
fn emails() {
    assert_eq!(
        email("  Alice.Smith+tag@Example.COM ").unwrap(),
        "alice.smith+tag@example.com"
    );
    assert_eq!(
        email("a_b%c-d@sub-domain.example.co").unwrap(),
        "a_b%c-d@sub-domain.example.co"
    );
    for bad in [
        "",
        "   ",
        "plain",
        "@example.com",
        "a@",
        "a@example",
        "a@example.c",
        "a@example.c0m",
        "a b@example.com",
        "a@@example.com",
        "a@b@example.com",
        "a@exa_mple.com",
        "a@.com",
        "ünï@example.com",
        "a@example.com\0",
    ] {
        assert_eq!(field_of(email(bad)), "email", "{bad:?}");
    }
    // 255 characters is the limit, counted after trimming.
    let local = "a".repeat(255 - "@example.com".len());
    assert!(email(&format!("  {local}@example.com  ")).is_ok());
    assert_eq!(field_of(email(&format!("a{local}@example.com"))), "email");
}

#[test]
fn passwords() {
    let p = PasswordPolicy::default();
    assert!(password("Password123", &p).is_ok());
    assert!(password("Abcdefg1", &p).is_ok(), "8 characters is enough");
    let at_max = format!("Aa1{}", "x".repeat(125));
    assert!(password(&at_max, &p).is_ok());
    for bad in [
        "Pass1",
        "Abcdef1",
        "password123",
        "PASSWORD123",
        "Passwordxyz",
        "",
        "Password\u{0}123",
    ] {
        assert_eq!(field_of(password(bad, &p)), "password", "{bad:?}");
    }
    let too_long = format!("Aa1{}", "x".repeat(126));
    assert_eq!(too_long.chars().count(), 129);
    assert_eq!(field_of(password(&too_long, &p)), "password");
    let err = password("Pass1", &p).unwrap_err();
    assert!(!err.to_string().contains("Pass1"), "{err}");

    let strict = PasswordPolicy::strict();
    assert_eq!(field_of(password("Password123", &strict)), "password");
    assert!(password("Password123!", &strict).is_ok());
    // Limits count characters, not bytes.
    assert!(password("Äbcdefg1", &p).is_ok());
}

#[test]
fn password_hashes() {
    assert!(password_hash(&PasswordHash::new("$argon2id$v=19$x")).is_ok());
    assert!(password_hash(&PasswordHash::new("h".repeat(255))).is_ok());
    for bad in ["", "  ", "a\0b"] {
        assert_eq!(
            field_of(password_hash(&PasswordHash::new(bad))),
            "password_hash"
        );
    }
    assert_eq!(
        field_of(password_hash(&PasswordHash::new("h".repeat(256)))),
        "password_hash"
    );
}

#[test]
fn task_names_and_descriptions() {
    assert!(task_name("n").is_ok());
    assert!(task_name(&"n".repeat(255)).is_ok());
    assert!(task_name(&"é".repeat(255)).is_ok(), "characters, not bytes");
    for bad in [String::new(), " \t\n".into(), "n".repeat(256), "a\0".into()] {
        assert_eq!(field_of(task_name(&bad)), "name", "{bad:?}");
    }
    assert!(description("").is_ok());
    assert!(description(&"d".repeat(1000)).is_ok());
    assert_eq!(field_of(description(&"d".repeat(1001))), "description");
    assert_eq!(field_of(description("a\0")), "description");
}

#[test]
fn scripts() {
    let p = ScriptPolicy::default();
    assert!(script_content("print('hello')", &p).is_ok());
    assert!(script_content(&"s".repeat(65535), &p).is_ok());
    assert_eq!(
        field_of(script_content(&"s".repeat(65536), &p)),
        "script_content"
    );
    for bad in [
        "",
        "  \n\t ",
        "x\0y",
        "rm -rf /",
        "sudo RM -RF /home",
        "echo; Rm -Rf ~",
    ] {
        assert_eq!(
            field_of(script_content(bad, &p)),
            "script_content",
            "{bad:?}"
        );
    }
    assert!(script_content("rm -rf /", &ScriptPolicy::allow_all()).is_ok());
    let custom = ScriptPolicy {
        deny_patterns: vec!["curl".into()],
    };
    assert!(script_content("rm -rf /", &custom).is_ok());
    assert_eq!(
        field_of(script_content("CURL evil", &custom)),
        "script_content"
    );
}

#[test]
fn numbers() {
    for ok in [0, 10] {
        assert!(priority(ok).is_ok());
    }
    for bad in [-1, 11, i32::MIN, i32::MAX] {
        assert_eq!(field_of(priority(bad)), "priority");
    }
    for ok in [1, 3600] {
        assert!(timeout_seconds(ok).is_ok());
    }
    for bad in [0, 3601, -5] {
        assert_eq!(field_of(timeout_seconds(bad)), "timeout_seconds");
    }
    for ok in [0, 255] {
        assert!(return_code(ok).is_ok());
    }
    for bad in [-1, 256] {
        assert_eq!(field_of(return_code(bad)), "return_code");
    }
    assert!(execution_time_ms(0).is_ok());
    assert_eq!(field_of(execution_time_ms(-1)), "execution_time_ms");
    assert!(memory_usage_bytes(0).is_ok());
    assert_eq!(field_of(memory_usage_bytes(-1)), "memory_usage_bytes");
}

#[test]
fn metadata_rules() {
    let p = MetadataPolicy::default();
    assert!(metadata(&json!({}), &p).is_ok());
    assert!(metadata(&json!({"a": [1, {"b": "c"}], "n": null}), &p).is_ok());
    for bad in [json!([]), json!("s"), json!(1), json!(null), json!(true)] {
        assert_eq!(field_of(metadata(&bad, &p)), "metadata", "{bad}");
    }
    assert_eq!(field_of(metadata(&json!({"a": "x\u{0}y"}), &p)), "metadata");
    assert_eq!(field_of(metadata(&json!({"k\u{0}": 1}), &p)), "metadata");

    // Depth: the top-level object is level 1.
    let nested = |levels: usize| {
        let mut v = serde_json::Value::Object(Default::default());
        for _ in 1..levels {
            v = serde_json::Value::Object([("n".to_owned(), v)].into_iter().collect());
        }
        v
    };
    assert!(metadata(&nested(16), &p).is_ok());
    assert_eq!(field_of(metadata(&nested(17), &p)), "metadata");
    // Far deeper than any stack would survive with recursion.
    // (Built with the constructors: json! would serialise its argument.)
    let mut deep = serde_json::Value::Object(Default::default());
    for _ in 0..100_000 {
        deep = serde_json::Value::Array(vec![deep]);
    }
    let deep = serde_json::Value::Object([("d".to_owned(), deep)].into_iter().collect());
    assert_eq!(field_of(metadata(&deep, &p)), "metadata");
    std::mem::forget(deep); // serde_json's Drop recurses; not what is tested here

    // Size: the compact JSON text, {"k":"…"} is 8 bytes plus the string.
    let sized = |len: usize| json!({ "k": "x".repeat(len - 8) });
    assert!(metadata(&sized(65536), &p).is_ok());
    assert_eq!(field_of(metadata(&sized(65537), &p)), "metadata");

    assert_eq!(field_of(metadata_filter(&json!([1]), &p)), "filter");
}

#[test]
fn queue_inputs() {
    assert!(worker_id("worker-1").is_ok());
    for bad in [String::new(), " ".into(), "w\0".into(), "w".repeat(256)] {
        assert_eq!(field_of(worker_id(&bad)), "worker_id", "{bad:?}");
    }
    assert!(worker_id(&"w".repeat(255)).is_ok());
    assert!(lease(Duration::from_millis(1)).is_ok());
    assert!(lease(MAX_LEASE).is_ok());
    for bad in [
        Duration::ZERO,
        Duration::from_micros(999),
        MAX_LEASE + Duration::from_millis(1),
    ] {
        assert_eq!(field_of(lease(bad)), "lease", "{bad:?}");
    }
    assert!(duration_at_most("older_than", MAX_PRUNE_AGE, MAX_PRUNE_AGE).is_ok());
    assert_eq!(
        field_of(duration_at_most("older_than", Duration::MAX, MAX_PRUNE_AGE)),
        "older_than"
    );
    assert!(claim_limit(1).is_ok() && claim_limit(MAX_CLAIM).is_ok());
    assert_eq!(field_of(claim_limit(0)), "limit");
    assert_eq!(field_of(claim_limit(MAX_CLAIM + 1)), "limit");
    assert!(outcome(&Outcome::completed(0)).is_ok());
    assert!(outcome(&Outcome::timed_out()).is_ok());
    assert_eq!(field_of(outcome(&Outcome::failed(256))), "return_code");
    let cancelled = Outcome {
        status: ExecutionStatus::Cancelled,
        ..Outcome::completed(0)
    };
    assert_eq!(field_of(outcome(&cancelled)), "status");
    let running = Outcome {
        status: ExecutionStatus::Running,
        ..Outcome::completed(0)
    };
    assert_eq!(field_of(outcome(&running)), "status");
    assert_eq!(
        field_of(outcome(&Outcome::completed(0).output("ok", "bad\0"))),
        "stderr"
    );
}

#[test]
fn inputs_are_checked_whole() {
    let policy = ValidationPolicy::default();
    let user = UserId::new();
    assert!(new_task(&NewTask::new(user, "n", "print(1)"), &policy).is_ok());
    let cases = [
        (NewTask::new(user, " ", "print(1)"), "name"),
        (NewTask::new(user, "n", "rm -rf /"), "script_content"),
        (NewTask::new(user, "n", "x").priority(11), "priority"),
        (
            NewTask::new(user, "n", "x").timeout_seconds(0),
            "timeout_seconds",
        ),
        (
            NewTask::new(user, "n", "x").description("d".repeat(1001)),
            "description",
        ),
        (NewTask::new(user, "n", "x").metadata(json!([])), "metadata"),
    ];
    for (task, field) in cases {
        assert_eq!(field_of(new_task(&task, &policy)), field);
    }
    let update = TaskUpdate {
        description: Some(Some("d".repeat(1001))),
        ..TaskUpdate::default()
    };
    assert_eq!(field_of(task_update(&update, &policy)), "description");
    let clear = TaskUpdate {
        description: Some(None),
        ..TaskUpdate::default()
    };
    assert!(task_update(&clear, &policy).is_ok());

    let now = crate::model::Timestamp::now();
    let earlier = crate::model::Timestamp::from_unix_micros(now.unix_micros() - 1).unwrap();
    let backwards = ExecutionUpdate {
        started_at: Some(now),
        completed_at: Some(earlier),
        ..ExecutionUpdate::default()
    };
    assert_eq!(field_of(execution_update(&backwards)), "completed_at");
    let nul = ExecutionUpdate {
        stderr: Some("\0".into()),
        ..ExecutionUpdate::default()
    };
    assert_eq!(field_of(execution_update(&nul)), "stderr");
}
