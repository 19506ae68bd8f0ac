// A request stream with another argument beside it.

use rpcnet::typed::Streaming;

#[rpcnet::service]
trait Upload {
    async fn put(&self, name: String, chunks: Streaming<Vec<u8>>) -> Result<u64, String>;
}

fn main() {}
