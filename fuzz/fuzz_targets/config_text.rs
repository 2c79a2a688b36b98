//! Fuzzes the parsers of text a user or a config file supplies: the store's
//! `config.toml`, the share network's config, `NAME@N` and `TAG@N` specs.
//! None may panic; a store config that parses and validates survives a
//! write and a read unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seccs_store::dir::StoreConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = toml::from_str::<StoreConfig>(text)
        && config.params().is_ok()
    {
        let written = toml::to_string(&config).expect("a parsed config writes");
        let back: StoreConfig = toml::from_str(&written).expect("a written config reads");
        assert_eq!(back, config);
    }
    let _ = seccs_net::config::Config::parse(text);
    let (name, version) = seccs_store::catalog::parse_name_version(text);
    assert!(text.starts_with(name));
    if version.is_some() {
        assert!(name.len() < text.len());
    }
    let (tag, version) = seccs_net::parse_tag_version(text);
    assert!(text.starts_with(tag));
    if version.is_some() {
        assert!(tag.len() < text.len());
    }
});
