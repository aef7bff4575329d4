//! A stopped cmgrd with a small netlink buffer overflows while 200,000
//! routes are added; continued, it resyncs by itself and counts it.

use std::time::Duration;

use fpsync_tests::Setup;

#[test]
fn overrun_resyncs_and_is_counted() {
    let s = Setup::with_args("overrun", &["-l", "256K"]);
    s.ns.batch("link add v0 type veth peer name v1\nlink set v0 up\nlink set v1 up\naddr add 10.0.0.1/16 dev v0\n");
    s.assert_in_sync(Duration::from_secs(2));
    s.cmgrd.as_ref().unwrap().signal(libc::SIGSTOP);
    // 200,000 distinct /24s from 100.0.0.0 on.
    let batch: String = (0..200_000u32)
        .map(|i| {
            format!(
                "route add {}.{}.{}.0/24 via 10.0.0.2\n",
                100 + i / 65536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    s.ns.batch(&batch);
    s.cmgrd.as_ref().unwrap().signal(libc::SIGCONT);
    s.assert_in_sync(Duration::from_secs(60));
    let sync = s.console("show sync");
    assert!(!sync.contains("- overruns: 0\n"), "{sync}");
    assert!(!sync.contains("- resyncs: 0\n"), "{sync}");
    assert!(s.fp_counter("routes4") >= 200_000);
}
