use std::sync::Arc;
use seccs_core::SecretKey;
use seccs_store::backend::MemoryBackend;
use seccs_store::*;
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let key = SecretKey::from_bytes([1; 32]);
    let mut data = vec![0u8; 16 << 20];
    seccs_core::random_bytes(&mut data).unwrap();
    let params = Params::new(4096, WrapperKind::AesSiv).unwrap();
    if mode == "floor" { seccs_store::bench::aes_siv_floor_mib_s(&data, 4096); return; }
    let mut st = Store::new(Arc::new(MemoryBackend::new()), params, &key);
    st.set_parallel(false);
    st.put(&data).unwrap();
}
