//! Tests of the nf_tables compiler and register machine on rule bytes as
//! the kernel dumps them.

use super::*;

fn interval(bounds: &[(&[u8], bool)]) -> Set {
    let mut set = Set {
        key_len: 1,
        interval: true,
        ..Set::default()
    };
    for (i, (k, start)) in bounds.iter().enumerate() {
        set.values.push(ElemValue::None);
        set.bounds.push((k.to_vec().into(), *start, i));
    }
    set.bounds.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    set
}

#[test]
fn an_interval_set_matches_as_the_kernels_rbtree() {
    // `{ 10-19, 20-29, 200-255 }` as nft sends it: a leading end
    // marker at 0, each range's start and end + 1 (20 twice: the end
    // of the first range and the start of the second), the last
    // range open to the top.
    let set = interval(&[
        (&[0], false),
        (&[10], true),
        (&[20], false),
        (&[20], true),
        (&[30], false),
        (&[200], true),
    ]);
    let inside = |k: u8| set.find(&[k]).is_some();
    let got: Vec<u8> = (0..=255).filter(|k| inside(*k)).collect();
    let want: Vec<u8> = (10..30).chain(200..=255).collect();
    assert_eq!(got, want);
}
