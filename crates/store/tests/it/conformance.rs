//! The store conformance suite, run against SQLite on a fresh file per case.

fn fresh() -> conformance::Fresh {
    let (dir, store) = crate::fresh();
    conformance::Fresh::new(store, dir)
}

conformance::suite!(fresh);
