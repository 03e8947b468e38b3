use super::*;

#[test]
fn output_is_cut_at_a_character_boundary_with_a_marker() {
    let mut short = "ok".to_owned();
    truncate_output(&mut short, 2);
    assert_eq!(short, "ok");
    let mut long = "aé".repeat(10); // 30 bytes
    truncate_output(&mut long, 4); // "aéa" is 4 bytes; "aé" + 1 byte of é is not a boundary
    assert_eq!(
        long,
        "aéa\n[voidrunner-db: output truncated: 4 of 30 bytes kept]"
    );
    let mut odd = "é".repeat(3); // 6 bytes
    truncate_output(&mut odd, 3);
    assert!(odd.starts_with("é\n"), "{odd}");
    let mut nothing = "é".to_owned();
    truncate_output(&mut nothing, 0);
    assert!(nothing.starts_with("\n[voidrunner-db"), "{nothing}");
}
