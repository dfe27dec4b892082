//! Offline schematic ID computation time (target: well under 1 ms).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use talos_factory::Schematic;

fn bench(c: &mut Criterion) {
    let typical = Schematic::parse(
        "customization:\n  extraKernelArgs: [net.ifnames=0, console=ttyS0]\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/iscsi-tools\n      - siderolabs/qemu-guest-agent\n      - siderolabs/util-linux-tools\n",
    )
    .expect("valid schematic");
    let text = typical.canonical_yaml();
    let mut embedded = typical.clone();
    embedded.customization.embedded_machine_configuration =
        "version: v1alpha1\nmachine:\n  type: worker\n".repeat(200);

    c.bench_function("offline_id/typical", |b| {
        b.iter(|| black_box(&typical).offline_id())
    });
    c.bench_function("offline_id/parse_and_hash", |b| {
        b.iter(|| Schematic::parse(black_box(&text)).map(|s| s.offline_id()))
    });
    c.bench_function("offline_id/embedded_config_8KiB", |b| {
        b.iter(|| black_box(&embedded).offline_id())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
