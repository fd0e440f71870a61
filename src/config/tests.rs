use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn expands_variables_and_defaults() {
    let env = env_of(&[("PORT", "9000"), ("EMPTY", "")]);
    let e = expand_env("0.0.0.0:${PORT:-8080}", &env).unwrap();
    assert_eq!(e.value, "0.0.0.0:9000");
    assert_eq!(expand_env("${NOPE:-x}", &env).unwrap().value, "x");
    assert_eq!(expand_env("${EMPTY:-d}", &env).unwrap().value, "d");
    assert_eq!(expand_env("a$b", &env).unwrap().value, "a$b");
    let unset = expand_env("${NOPE}", &env).unwrap();
    assert_eq!(unset.unset_variables, vec!["NOPE".to_string()]);
    assert!(expand_env("${NOPE", &env).is_err());
    assert!(expand_env("${bad name}", &env).is_err());
}

#[test]
fn the_shipped_file_loads_with_and_without_secrets() {
    let bare = Config::parse(EMBEDDED, "storehook.toml", &env_of(&[])).unwrap();
    assert_eq!(bare.listen.port(), 8080);
    assert_eq!(bare.store_url, "sqlite://data/storehook.db");
    assert!(bare.store_migrate);
    assert_eq!(bare.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(bare.mappings_dir, "mappings");
    let ids: Vec<_> = bare.sources.keys().cloned().collect();
    assert_eq!(ids, ["haravan", "shop-ir", "shopify", "woocommerce"]);
    assert!(bare.sources.values().all(|s| !s.secrets.is_set()));
    assert_eq!(
        bare.sources["haravan"].secrets.unset_variables[0],
        "HARAVAN_WEBHOOK_SECRET"
    );

    let env = env_of(&[
        ("PORT", "9999"),
        ("STOREHOOK_STORE_URL", "sqlite:///tmp/x.db"),
        ("HARAVAN_WEBHOOK_SECRET", "h"),
        ("HARAVAN_VERIFY_TOKEN", "t"),
        ("WOOCOMMERCE_WEBHOOK_SECRET", "w"),
        ("SHOPIFY_WEBHOOK_SECRET", "s"),
    ]);
    let full = Config::parse(EMBEDDED, "storehook.toml", &env).unwrap();
    assert_eq!(full.listen.port(), 9999);
    assert_eq!(full.store_url, "sqlite:///tmp/x.db");
    assert_eq!(full.sources["haravan"].platform, PlatformKind::Haravan);
    assert_eq!(full.sources["haravan"].secrets.values[0].expose(), "h");
    assert_eq!(full.sources["haravan"].verify_token.values[0].expose(), "t");
    assert_eq!(
        full.sources["woocommerce"].platform,
        PlatformKind::WooCommerce
    );
    assert_eq!(full.sources["shopify"].secrets.values.len(), 1);
}

#[test]
fn an_empty_secret_is_refused_naming_the_key() {
    let env = env_of(&[("SHOPIFY_WEBHOOK_SECRET", "")]);
    let err = Config::parse(EMBEDDED, "storehook.toml", &env).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("storehook.toml"), "{text}");
    assert!(text.contains("sources.shopify.secrets[0]"), "{text}");
    assert!(text.contains("empty"), "{text}");
}

#[test]
fn invalid_values_name_the_file_and_key() {
    let base = |extra: &str| {
        format!("[server]\nlisten = \"0.0.0.0:8080\"\n{extra}\n[store]\nurl = \"sqlite://x.db\"\n")
    };
    let env = env_of(&[]);
    let e = Config::parse(&base("max_body_bytes = 0"), "f.toml", &env).unwrap_err();
    assert!(e.to_string().contains("server.max_body_bytes"), "{e}");
    let e = Config::parse(&base("colour = 1"), "f.toml", &env).unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    let bad_listen = "[server]\nlisten = \"nowhere\"\n[store]\nurl = \"sqlite://x.db\"\n";
    let e = Config::parse(bad_listen, "f.toml", &env).unwrap_err();
    assert!(e.to_string().contains("server.listen"), "{e}");
    let literal = format!(
        "{}[sources.shop]\nplatform = \"shopify\"\nsecrets = [\"hunter2\"]\n",
        base("")
    );
    let e = Config::parse(&literal, "f.toml", &env).unwrap_err();
    assert!(e.to_string().contains("sources.shop.secrets[0]"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let platform = format!(
        "{}[sources.shop]\nplatform = \"magento\"\nsecrets = [\"${{S}}\"]\n",
        base("")
    );
    let e = Config::parse(&platform, "f.toml", &env).unwrap_err();
    assert!(e.to_string().contains("magento"), "{e}");
    let id = format!(
        "{}[sources.\"Shop One\"]\nplatform = \"shopify\"\nsecrets = [\"${{S}}\"]\n",
        base("")
    );
    let e = Config::parse(&id, "f.toml", &env).unwrap_err();
    assert!(e.to_string().contains("sources.Shop One"), "{e}");
}

#[test]
fn a_destination_credential_misnamed_or_missing_is_refused_naming_the_key() {
    let legion = |credentials: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://x.db\"\n\
             [destinations.legion]\nkind = \"legion\"\nbase_url = \"http://x\"\n\
             [destinations.legion.credentials]\n{credentials}\n"
        )
    };
    let env = env_of(&[("KEY", "k")]);
    let ok = Config::parse(&legion("api_key = \"${KEY}\""), "f.toml", &env).unwrap();
    assert!(!ok.destinations["legion"].is_dry());
    let typo = Config::parse(&legion("apikey = \"${KEY}\""), "f.toml", &env).unwrap_err();
    let text = typo.to_string();
    assert!(
        text.contains("destinations.legion.credentials.apikey"),
        "{text}"
    );
    assert!(text.contains("api_key"), "{text}");
    let missing = Config::parse(&legion(""), "f.toml", &env).unwrap_err();
    let text = missing.to_string();
    assert!(text.contains("destinations.legion.credentials"), "{text}");
    assert!(text.contains("`api_key` is missing"), "{text}");
}

#[test]
fn rotation_keeps_every_set_secret() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://x.db\"\n\
                [sources.shop]\nplatform = \"shopify\"\nsecrets = [\"${NEW}\", \"${OLD}\", \"${GONE}\"]\n";
    let c = Config::parse(text, "f.toml", &env_of(&[("NEW", "n"), ("OLD", "o")])).unwrap();
    let s = &c.sources["shop"].secrets;
    assert_eq!(s.values.len(), 2);
    assert_eq!(s.unset_variables, vec!["GONE".to_string()]);
    assert_eq!(format!("{:?}", s.values[0]), "Secret(***)");
}

#[test]
fn a_source_sets_vars_of_its_own_and_may_allow_test_orders() {
    let text = EMBEDDED.to_string()
        + "\n[sources.shop-us]\nplatform = \"shopify\"\nsecrets = [\"${US_SECRET}\"]\n\
           allow_test_orders = true\n\
           vars = { legion_currency = \"USD\", phone_region = \"${US_REGION:-US}\", n = 2 }\n";
    let config = Config::parse(&text, "storehook.toml", &env_of(&[])).unwrap();
    let vars = config.source_vars();
    assert_eq!(
        serde_json::Value::Object(vars["shop-us"].clone()),
        serde_json::json!({"legion_currency": "USD", "phone_region": "US", "n": 2, "allow_test_orders": true})
    );
    assert_eq!(vars["shop-ir"]["legion_currency"], "IRT");
    assert!(
        !vars.contains_key("haravan"),
        "a source without values is left out"
    );

    let text = EMBEDDED.to_string()
        + "\n[sources.shop-us]\nplatform = \"shopify\"\nsecrets = [\"${US_SECRET}\"]\n\
           vars = { region = \"${US_REGION}\" }\n";
    let err = Config::parse(&text, "storehook.toml", &env_of(&[])).unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains("sources.shop-us.vars.region") && err.contains("US_REGION"),
        "{err}"
    );
}

#[test]
fn a_secret_with_a_default_is_refused_without_repeating_it() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://x.db\"\n\
                [sources.shop]\nplatform = \"shopify\"\nsecrets = [\"${SHOP_SECRET:-hunter2}\"]\n";
    let e = Config::parse(text, "f.toml", &env_of(&[])).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("sources.shop.secrets[0]") && e.contains("no default"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn the_admin_table_takes_an_address_and_a_header_and_the_token_only_from_the_environment() {
    let bare = Config::parse(EMBEDDED, "storehook.toml", &env_of(&[])).unwrap();
    assert_eq!(bare.admin.listen, None);
    assert_eq!(bare.admin.trusted_proxy_header, None, "off by default");
    assert!(bare.admin.token.is_none());
    let with = |table: &str| EMBEDDED.replace("[admin]\n", &format!("[admin]\n{table}\n"));
    let env = env_of(&[(ADMIN_TOKEN_VARIABLE, "s3cret-admin")]);
    let config = Config::parse(
        &with("listen = \"127.0.0.1:9091\"\ntrusted_proxy_header = \"Fly-Client-IP\""),
        "storehook.toml",
        &env,
    )
    .unwrap();
    assert_eq!(config.admin.listen, Some("127.0.0.1:9091".parse().unwrap()));
    assert_eq!(
        config.admin.trusted_proxy_header.as_deref(),
        Some("Fly-Client-IP")
    );
    assert_eq!(
        config.admin.token.as_ref().unwrap().expose(),
        "s3cret-admin"
    );
    assert!(!format!("{config:?}").contains("s3cret-admin"));
    let blank = env_of(&[(ADMIN_TOKEN_VARIABLE, "  ")]);
    assert!(
        Config::parse(EMBEDDED, "f", &blank)
            .unwrap()
            .admin
            .token
            .is_none()
    );
    for (table, key) in [
        ("listen = \"localhost\"", "admin.listen"),
        (
            "trusted_proxy_header = \"Fly Client IP\"",
            "admin.trusted_proxy_header",
        ),
        ("token = \"in-the-file\"", "token"),
    ] {
        let err = Config::parse(&with(table), "storehook.toml", &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains(key), "{table}: {err}");
    }
}

#[test]
fn the_server_limits_have_generous_defaults_and_are_read_from_the_server_table() {
    let shipped = Config::parse(EMBEDDED, "storehook.toml", &env_of(&[])).unwrap();
    assert_eq!(shipped.limits, ServerLimits::default());
    assert_eq!(shipped.limits.request_timeout, Duration::from_secs(30));
    assert_eq!(shipped.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(shipped.limits.max_concurrent_requests, 512);
    assert_eq!(shipped.limits.concurrency_wait, Duration::from_secs(2));

    let bare = "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://x.db\"\n";
    let config = Config::parse(bare, "f.toml", &env_of(&[])).unwrap();
    assert_eq!(config.limits, ServerLimits::default());

    let set = "[server]\nlisten = \"127.0.0.1:0\"\nrequest_timeout = \"${T:-5s}\"\n\
               idle_timeout = \"750ms\"\nmax_concurrent_requests = 3\nconcurrency_wait = \"100ms\"\n\
               [store]\nurl = \"sqlite://x.db\"\n";
    let config = Config::parse(set, "f.toml", &env_of(&[("T", "10s")])).unwrap();
    assert_eq!(
        config.limits,
        ServerLimits {
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_millis(750),
            max_concurrent_requests: 3,
            concurrency_wait: Duration::from_millis(100),
        }
    );
}

#[test]
fn invalid_server_limits_are_refused_naming_the_key() {
    let with = |line: &str| {
        format!("[server]\nlisten = \"127.0.0.1:0\"\n{line}\n[store]\nurl = \"sqlite://x.db\"\n")
    };
    let refused = |line: &str, key: &str, says: &str| {
        let e = Config::parse(&with(line), "f.toml", &env_of(&[])).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("f.toml") && e.contains(key) && e.contains(says),
            "{line}: {e}"
        );
    };
    refused(
        "request_timeout = \"soon\"",
        "server.request_timeout",
        "`soon` is not a duration",
    );
    refused(
        "request_timeout = \"0s\"",
        "server.request_timeout",
        "not a duration",
    );
    refused(
        "idle_timeout = \"-5s\"",
        "server.idle_timeout",
        "not a duration",
    );
    refused(
        "max_concurrent_requests = 0",
        "server.max_concurrent_requests",
        "above 0",
    );
    refused(
        "concurrency_wait = \"2 parsecs\"",
        "server.concurrency_wait",
        "not a duration",
    );
    refused(
        "request_timeout = \"2s\"\nconcurrency_wait = \"2s\"",
        "server.concurrency_wait",
        "shorter than server.request_timeout (2s)",
    );
    refused(
        "request_timeout = \"${UNSET}\"",
        "server.request_timeout",
        "UNSET is not set",
    );
}

#[test]
fn the_store_url_comes_from_storehook_store_url_never_database_url() {
    let env = env_of(&[("DATABASE_URL", "postgres://other-app@db/other")]);
    let config = Config::parse(EMBEDDED, "storehook.toml", &env).unwrap();
    assert_eq!(config.store_url, "sqlite://data/storehook.db");
    let env = env_of(&[
        ("DATABASE_URL", "postgres://other-app@db/other"),
        ("STOREHOOK_STORE_URL", "postgres://storehook@db/storehook"),
    ]);
    let config = Config::parse(EMBEDDED, "storehook.toml", &env).unwrap();
    assert_eq!(config.store_url, "postgres://storehook@db/storehook");
}

#[test]
fn store_migrate_may_be_turned_off() {
    let text = EMBEDDED.replace("migrate = true", "migrate = false");
    let config = Config::parse(&text, "storehook.toml", &env_of(&[])).unwrap();
    assert!(!config.store_migrate);
    let text = EMBEDDED.replace("migrate = true", "migrate = \"no\"");
    let error = Config::parse(&text, "storehook.toml", &env_of(&[])).unwrap_err();
    assert!(error.to_string().contains("migrate"), "{error}");
}

#[test]
fn every_configured_secret_is_in_the_list_redacted_from_answers() {
    let text = format!(
        "{EMBEDDED}\n[destinations.crm]\nkind = \"http\"\nurl = \"https://crm.example\"\n\
         headers = {{ Authorization = \"Bearer ${{CRM_TOKEN}}\", \"X-Shop\" = \"shop-one\" }}\n"
    );
    let env = env_of(&[
        ("HARAVAN_WEBHOOK_SECRET", "haravan-now"),
        ("HARAVAN_WEBHOOK_SECRET_PREVIOUS", "haravan-before"),
        ("HARAVAN_VERIFY_TOKEN", "verify-tok"),
        ("SHOPIFY_WEBHOOK_SECRET", "shopify-s"),
        ("LEGION_API_KEY", "legion-k"),
        ("SCALEF_USER", "scalef-u"),
        ("SCALEF_ACCESS_TOKEN", "scalef-t"),
        ("SALEKIT_TOKEN", "salekit-t"),
        ("CRM_TOKEN", "crm-t"),
        (ADMIN_TOKEN_VARIABLE, "admin-t"),
    ]);
    let config = Config::parse(&text, "storehook.toml", &env).unwrap();
    let secrets = config.secrets();
    let all = [
        "haravan-now",
        "haravan-before",
        "verify-tok",
        "shopify-s",
        "legion-k",
        "scalef-u",
        "scalef-t",
        "salekit-t",
        "Bearer crm-t",
        "admin-t",
    ];
    let quoted = all.join(" | ");
    let redacted = secrets.redact(&quoted);
    assert_eq!(
        redacted,
        vec!["[redacted]"; all.len()].join(" | "),
        "{secrets:?}"
    );
    assert_eq!(
        secrets.redact("shop-one"),
        "shop-one",
        "a plain header is no secret"
    );
}
