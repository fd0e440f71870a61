//! Translates one JSON order per input line through the mappings of one platform and topic,
//! writing each payload as a JSON line: the storehook side of `bench/jq-compare.sh`.
//!
//! `translate_lines MAPPINGS_DIR PLATFORM TOPIC < orders.jsonl > payloads.jsonl`

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use storehook::domain::PlatformKind;
use storehook::mapping::{Catalog, Outcome, Webhook};

/// mimalloc: translating an order allocates hundreds of small values, which glibc's malloc
/// serves markedly slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mappings, platform, topic] = args.as_slice() else {
        anyhow::bail!("usage: translate_lines MAPPINGS_DIR PLATFORM TOPIC < orders.jsonl");
    };
    let platform = PlatformKind::ALL
        .into_iter()
        .find(|p| p.as_str() == platform)
        .ok_or_else(|| anyhow::anyhow!("unknown platform {platform}"))?;
    let catalog = Catalog::load(Path::new(mappings))
        .map_err(|e| anyhow::anyhow!("{} mapping error(s): {e:?}", e.len()))?;
    let headers = BTreeMap::new();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let started = Instant::now();
    let (mut orders, mut failures) = (0u64, 0u64);
    let mut translate = |line: &[u8]| -> anyhow::Result<()> {
        if line.is_empty() {
            return Ok(());
        }
        orders += 1;
        let webhook = Webhook {
            source: platform.as_str(),
            platform,
            topic,
            headers: &headers,
            body: line,
        };
        for result in catalog.translate(&webhook) {
            match result {
                Ok(Outcome::Plan(plan)) => {
                    out.write_all(plan.payload_json.as_bytes())?;
                    out.write_all(b"\n")?;
                }
                Ok(Outcome::Skip(_)) => {}
                Err(_) => failures += 1,
            }
        }
        Ok(())
    };
    // Lines are found with memchr's vector search in a buffer read 1 MiB at a time (std's
    // `BufRead::split` scans byte by byte and allocates each line).
    let mut stdin = std::io::stdin().lock();
    let mut buffer = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            buffer.resize(buffer.len() * 2, 0);
        }
        let read = stdin.read(&mut buffer[filled..])?;
        filled += read;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buffer[..filled]) {
            translate(&buffer[start..end])?;
            start = end + 1;
        }
        if read == 0 {
            translate(&buffer[start..filled])?;
            break;
        }
        buffer.copy_within(start..filled, 0);
        filled -= start;
    }
    out.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "storehook: {orders} orders in {seconds:.3} s = {:.0} orders/s ({failures} translation errors)",
        orders as f64 / seconds
    );
    Ok(())
}
