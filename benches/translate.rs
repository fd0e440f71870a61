//! Translating each platform's recorded webhooks through all of its mappings: JSON bytes in,
//! validated payloads out. `cargo bench --bench translate`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use storehook::domain::PlatformKind;
use storehook::fixture::Fixture;
use storehook::mapping::{Catalog, Webhook};

fn translate_fixtures(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = Catalog::load_with_env(&root.join("mappings"), &|_| None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mut group = c.benchmark_group("translate");
    for platform in PlatformKind::ALL {
        let dir = root.join("fixtures").join(platform.as_str());
        let mut recorded = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let fixture = Fixture::load(&path).unwrap();
                let topic = fixture
                    .header(storehook::source::platform(platform).topic_header())
                    .unwrap()
                    .to_string();
                recorded.push((fixture.body, topic));
            }
        }
        let headers = BTreeMap::new();
        group.throughput(Throughput::Elements(recorded.len() as u64));
        group.bench_function(platform.as_str(), |b| {
            b.iter(|| {
                for (body, topic) in &recorded {
                    let plans = catalog.translate(&Webhook {
                        source: platform.as_str(),
                        platform,
                        topic,
                        headers: &headers,
                        body,
                    });
                    // Payload JSON out, as a destination receives it.
                    for plan in plans.iter().flatten().filter_map(|o| o.plan()) {
                        black_box(serde_json::to_vec(&plan.payload).unwrap());
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, translate_fixtures);
criterion_main!(benches);
