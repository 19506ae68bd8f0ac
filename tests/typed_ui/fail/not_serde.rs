// A type without serde's traits, as an argument and as a result.

struct Celsius(f64);

#[rpcnet::service]
trait Thermometer {
    async fn set(&self, target: Celsius) -> Result<(), String>;
}

fn main() {}
