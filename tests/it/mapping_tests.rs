//! `storehook test`: the real binary over the shipped mappings' test files, and over test
//! files written in a temporary directory beside a copy of a shipped mapping.

use std::path::Path;
use std::process::Output;

use crate::cli::{shipped_config, storehook};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run_test(mappings: &Path) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    storehook(cwd.path())
        .arg("--config")
        .arg(shipped_config())
        .arg("test")
        .arg("--mappings")
        .arg(mappings)
        .output()
        .unwrap()
}

/// A mappings directory with the shipped `haravan/NAME.toml` and `test` as its test file.
fn with_test(name: &str, test: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("haravan")).unwrap();
    std::fs::copy(
        root().join(format!("mappings/haravan/{name}.toml")),
        dir.path().join(format!("haravan/{name}.toml")),
    )
    .unwrap();
    std::fs::write(dir.path().join(format!("haravan/{name}.test.toml")), test).unwrap();
    dir
}

fn fixture(name: &str) -> String {
    root()
        .join(format!("fixtures/haravan/{name}.json"))
        .display()
        .to_string()
}

fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_mappings_pass_their_tests() {
    let output = run_test(&root().join("mappings"));
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("12 test files,"), "{stdout}");
    assert!(stdout.contains(" 0 failed, 0 errors"), "{stdout}");
    assert!(!stdout.contains("has no test file"), "{stdout}");
    let passed = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(passed >= 24, "{stdout}");
    assert!(
        stdout.contains("ok   haravan/legion-purchase: guest-email-only"),
        "{stdout}"
    );
}

#[test]
fn a_wrong_expected_field_fails_with_a_diff_of_both_values() {
    let test = format!(
        "[[case]]\nfixture = '{}'\nkey = '1071234501'\noutput = {{ full_name = 'Nguyễn Văn An', phone = '0900000000' }}\n",
        fixture("paid-two-items-discount")
    );
    let dir = with_test("salekit-audience", &test);
    let output = run_test(dir.path());
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("FAIL haravan/salekit-audience: paid-two-items-discount"),
        "{stdout}"
    );
    assert!(stdout.contains(r#"-   "phone": "0900000000""#), "{stdout}");
    assert!(stdout.contains(r#"+   "phone": "0987654321""#), "{stdout}");
    assert!(
        stdout.contains(r#"    "full_name": "Nguyễn Văn An""#),
        "an equal field is context: {stdout}"
    );
    assert!(
        !stdout.contains("email"),
        "unlisted fields stay out: {stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed, 0 errors"), "{stdout}");
}

#[test]
fn a_skipped_expectation_passes_on_its_reason_and_fails_on_another() {
    let case = |reason: &str| {
        format!(
            "[[case]]\nfixture = '{}'\nkey = '1071234901'\nskipped = '{reason}'\n",
            fixture("guest-email-only")
        )
    };
    let dir = with_test("legion-purchase", &case("none given"));
    let output = run_test(dir.path());
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");

    let dir = with_test("legion-purchase", &case("a test order"));
    let output = run_test(dir.path());
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(r#"reason contains "a test order""#),
        "{stdout}"
    );
    assert!(
        stdout.contains("no mobile number Legion can use: none given"),
        "the actual reason: {stdout}"
    );

    // A plan where a skip is expected fails too, and names the plan's key.
    let test = format!(
        "[[case]]\nfixture = '{}'\nskipped = ''\n",
        fixture("paid-two-items-discount")
    );
    let dir = with_test("legion-purchase", &test);
    let output = run_test(dir.path());
    let (stdout, _) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("but the mapping made a plan with key 1071234501"),
        "{stdout}"
    );
}

#[test]
fn an_invalid_test_file_is_an_error_naming_the_file() {
    // An unknown key: the file and the line toml gives.
    let test = format!(
        "[[case]]\nfixture = '{}'\napplies = false\nexpected = 1\n",
        fixture("guest-no-customer")
    );
    let dir = with_test("salekit-audience", &test);
    let output = run_test(dir.path());
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("haravan/salekit-audience.test.toml:4: unknown field `expected`"),
        "{stderr}"
    );
    assert!(
        stdout.contains("0 cases: 0 passed, 0 failed, 1 errors"),
        "{stdout}"
    );

    // A fixture that is not there: the file, the case's line and its name; the other
    // cases still run.
    let test = format!(
        "[[case]]\nfixture = '{}'\napplies = false\n\n[[case]]\nfixture = 'nowhere.json'\napplies = false\n",
        fixture("guest-no-customer")
    );
    let dir = with_test("salekit-audience", &test);
    let output = run_test(dir.path());
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("haravan/salekit-audience.test.toml:5: case `nowhere`: cannot read"),
        "{stderr}"
    );
    assert!(stdout.contains("1 passed, 0 failed, 1 errors"), "{stdout}");

    // Two expectations in one case, and a test file with no mapping beside it.
    let test = format!(
        "[[case]]\nfixture = '{}'\napplies = false\nskipped = 'x'\n",
        fixture("guest-no-customer")
    );
    let dir = with_test("salekit-audience", &test);
    std::fs::write(dir.path().join("haravan/gone.test.toml"), "[[case]]\n").unwrap();
    let output = run_test(dir.path());
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("expect exactly one of output, output_exact, skipped, applies = false"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gone.test.toml: no mapping haravan/gone.toml beside it"),
        "{stderr}"
    );
}
