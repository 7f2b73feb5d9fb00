//! `task list` without `--limit` walks the store a page at a time: the output of a list longer
//! than many pages is complete, in id order, and `--json` is still one valid array.

use crate::support::Repo;

/// Imports `count` tasks titled by number; every third carries the label `third`.
fn many(repo: &Repo, count: usize) {
    let mut text = String::new();
    for i in 1..=count {
        let labels = if i % 3 == 0 {
            r#", "labels": ["third"]"#
        } else {
            ""
        };
        text.push_str(&format!("{{\"title\": \"number {i}\"{labels}}}\n"));
    }
    let file = repo.path().join("many.jsonl");
    std::fs::write(&file, text).unwrap();
    repo.ok(&["task", "import", file.to_str().unwrap()]);
}

/// The ids and titles of a task table's rows, in the order printed.
fn table_rows(text: &str) -> Vec<(u64, String)> {
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    assert!(
        header.starts_with("ID") && header.ends_with("TITLE"),
        "{header}"
    );
    lines
        .map(|line| {
            let id = line.split_whitespace().next().unwrap().parse().unwrap();
            let title = line.split("  ").last().unwrap().trim().to_string();
            (id, title)
        })
        .collect()
}

#[test]
fn an_unlimited_list_is_complete_and_in_order_across_pages() {
    // More than two pages of 500, the last one short.
    const COUNT: u64 = 1234;
    let repo = Repo::new();
    repo.ok(&["init"]);
    many(&repo, COUNT as usize);

    let rows = table_rows(&repo.ok(&["task", "list"]));
    let expected: Vec<(u64, String)> = (1..=COUNT).map(|i| (i, format!("number {i}"))).collect();
    assert_eq!(rows, expected, "every task once, oldest first, one header");

    let listed = repo.json(&["task", "list", "--json"]);
    let listed = listed.as_array().expect("one JSON array");
    let ids: Vec<u64> = listed.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=COUNT).collect::<Vec<_>>());
    assert!(
        listed
            .iter()
            .all(|t| t["timer"].is_null() && t["state"] == "open")
    );

    // A filter is applied page by page, not after the last.
    let thirds = table_rows(&repo.ok(&["task", "list", "--label", "third"]));
    let ids: Vec<u64> = thirds.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (3..=COUNT).step_by(3).collect::<Vec<_>>());
    let thirds = repo.json(&["task", "list", "--label", "third", "--json"]);
    assert_eq!(thirds.as_array().unwrap().len(), (COUNT / 3) as usize);

    // Nothing matching is still an empty array, and a sentence for a person.
    assert_eq!(
        repo.json(&["task", "list", "--state", "done", "--json"]),
        serde_json::json!([])
    );
    assert_eq!(
        repo.ok(&["task", "list", "--state", "done"]).trim(),
        "no done tasks"
    );
}
