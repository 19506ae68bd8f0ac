//! `#[rpcnet::service]`: a typed rpcnet service from a trait of `async fn`s.
//!
//! Use it through `rpcnet::service`; its documentation there has the
//! signature convention, the wire format and a complete example.

use proc_macro::TokenStream;

mod expand;
mod model;

/// Generates a typed server adapter, a client and a cluster client from a
/// trait of `async fn`s. Documented (with examples) as `rpcnet::service`.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut options = model::ServiceOptions::default();
    let parser = syn::meta::parser(|meta| options.parse(meta));
    // Reported together with the trait's own problems.
    let options_error = syn::parse::Parser::parse(parser, args).err();
    let item = match syn::parse::<syn::ItemTrait>(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            let mut out = syn::Error::new(
                e.span(),
                "#[rpcnet::service] applies to a trait of `async fn` methods",
            )
            .to_compile_error();
            out.extend(proc_macro2::TokenStream::from(input));
            return out.into();
        }
    };
    expand::expand(options, options_error, item).into()
}
