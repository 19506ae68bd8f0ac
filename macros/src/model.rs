//! What a service trait declares: its options and, for each method, the
//! call mode, the wire name and the types, checked with readable errors.

use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, LitInt, LitStr, Pat, PathArguments, ReturnType,
    TraitItem, TraitItemFn, Type,
};

/// `#[rpcnet::service(name = "pkg.Service", version = N, codec = Type, crate = path)]`.
#[derive(Default)]
pub struct ServiceOptions {
    pub name: Option<LitStr>,
    pub version: Option<u64>,
    pub codec: Option<Type>,
    pub krate: Option<syn::Path>,
}

impl ServiceOptions {
    pub fn parse(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("name") {
            let name: LitStr = meta.value()?.parse()?;
            check_name(&name, "service")?;
            self.name = Some(name);
        } else if meta.path.is_ident("version") {
            self.version = Some(meta.value()?.parse::<LitInt>()?.base10_parse()?);
        } else if meta.path.is_ident("codec") {
            self.codec = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("crate") {
            self.krate = Some(meta.value()?.parse()?);
        } else {
            return Err(meta.error(
                "unknown service option: expected `name = \"pkg.Service\"`, `version = N`, \
                 `codec = Type` or `crate = path`",
            ));
        }
        Ok(())
    }
}

/// A wire name: not empty, no whitespace.
fn check_name(name: &LitStr, what: &str) -> syn::Result<()> {
    let value = name.value();
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(syn::Error::new(
            name.span(),
            format!("a {what} name is not empty and has no whitespace"),
        ));
    }
    Ok(())
}

/// The four call modes, from where `Streaming` appears.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Unary,
    ServerStreaming,
    ClientStreaming,
    Bidirectional,
}

/// One argument of a method (other than `&self`).
pub struct Arg {
    /// The name the generated client methods use.
    pub ident: Ident,
    pub ty: Type,
}

/// A method of the service, checked.
pub struct Method {
    pub ident: Ident,
    /// The method part of the wire name (`Service.method`).
    pub wire_name: String,
    pub mode: Mode,
    /// Unary and server streaming: the arguments (any number). Client
    /// streaming and bidirectional: none (see `request_item`).
    pub args: Vec<Arg>,
    /// The item type of a request stream, and the argument's name.
    pub request_item: Option<(Ident, Type)>,
    /// The success type (of the response, or of each response item).
    pub ok: Type,
    /// The service error type `E`.
    pub err: Type,
    /// Whether the trait declares the error as `CallError<E>` (the handler
    /// may then also answer with an `RpcError`).
    pub err_is_call_error: bool,
    pub idempotent: bool,
    pub timeout_ms: Option<u64>,
    /// Doc comments, for the client methods.
    pub docs: Vec<Attribute>,
    /// The signature as written, for the schema hash.
    pub signature: String,
}

/// The last path segment of `ty` if it is named `name`.
fn segment<'a>(ty: &'a Type, name: &str) -> Option<&'a PathArguments> {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            (last.ident == name).then_some(&last.arguments)
        }
        _ => None,
    }
}

/// The type arguments of `Name<A, B, ..>`.
fn type_args(args: &PathArguments) -> Vec<&Type> {
    match args {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `Streaming<T>` → `T`.
pub fn streaming_item(ty: &Type) -> Option<&Type> {
    let args = type_args(segment(ty, "Streaming")?);
    (args.len() == 1).then(|| args[0])
}

/// `Result<T, E>` → `(T, E)`.
fn result_types(ty: &Type) -> Option<(&Type, &Type)> {
    let args = type_args(segment(ty, "Result")?);
    (args.len() == 2).then(|| (args[0], args[1]))
}

/// Whether values of `ty` travel as raw bytes: `Bytes` (`bytes::Bytes`)
/// and `Vec<u8>`.
pub fn is_bytes(ty: &Type) -> bool {
    if matches!(segment(ty, "Bytes"), Some(PathArguments::None)) {
        return true;
    }
    segment(ty, "Vec").is_some_and(|args| {
        matches!(type_args(args).as_slice(), [Type::Path(p)] if p.qself.is_none() && p.path.is_ident("u8"))
    })
}

/// A type as written, without whitespace (`Result<i32,MyError>`).
pub fn type_text(ty: &Type) -> String {
    ty.to_token_stream()
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

const RETURN_HELP: &str = "a service method returns `Result<T, E>` (unary, client streaming) \
     or `Streaming<Result<T, E>>` (server streaming, bidirectional)";

impl Method {
    /// Reads and checks one trait method; every problem found is reported.
    pub fn parse(item: &mut TraitItemFn) -> syn::Result<Self> {
        let mut errors: Vec<syn::Error> = Vec::new();
        let (idempotent, timeout_ms, name) = match method_options(&mut item.attrs) {
            Ok(o) => o,
            Err(e) => {
                errors.push(e);
                (false, None, None)
            }
        };
        let sig = &item.sig;
        if sig.asyncness.is_none() {
            errors.push(syn::Error::new(
                sig.fn_token.span,
                format!(
                    "service methods are `async fn`: write `async fn {}(&self, ..)`",
                    sig.ident
                ),
            ));
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errors.push(syn::Error::new(
                sig.generics.span(),
                "service methods are not generic: every type must be known to encode it",
            ));
        }
        if let Some(c) = &sig.constness {
            errors.push(syn::Error::new(c.span, "service methods are not `const`"));
        }
        if let Some(u) = &sig.unsafety {
            errors.push(syn::Error::new(u.span, "service methods are not `unsafe`"));
        }
        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            Some(other @ FnArg::Receiver(_)) => errors.push(syn::Error::new(
                other.span(),
                "service methods take `&self`: one service value serves concurrent calls",
            )),
            _ => errors.push(syn::Error::new(
                sig.ident.span(),
                "service methods take `&self` first",
            )),
        }
        let rest: Vec<&FnArg> = inputs.collect();
        let mut args = Vec::new();
        let mut request_item = None;
        for (i, input) in rest.iter().enumerate() {
            let FnArg::Typed(pat_type) = input else {
                continue;
            };
            let ident = match &*pat_type.pat {
                Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
                Pat::Wild(_) => Ident::new(&format!("arg{i}"), pat_type.pat.span()),
                other => {
                    errors.push(syn::Error::new(
                        other.span(),
                        "service method arguments are plain names (`name: Type`)",
                    ));
                    continue;
                }
            };
            let ty = (*pat_type.ty).clone();
            if let Type::Reference(r) = &ty {
                errors.push(syn::Error::new(
                    r.span(),
                    "service method arguments are owned values (`T`, not `&T`): \
                     they are decoded from the request",
                ));
                continue;
            }
            if let Type::ImplTrait(t) = &ty {
                errors.push(syn::Error::new(
                    t.span(),
                    "a request stream is declared as `Streaming<T>`, not `impl Stream`",
                ));
                continue;
            }
            if let Some(item_ty) = streaming_item(&ty) {
                if rest.len() != 1 {
                    errors.push(syn::Error::new(
                        pat_type.ty.span(),
                        "a request stream (`Streaming<T>`) must be the method's only argument \
                         besides `&self`: send other values in the stream's items",
                    ));
                    continue;
                }
                request_item = Some((ident, item_ty.clone()));
            } else {
                args.push(Arg { ident, ty });
            }
        }
        let returned = match &sig.output {
            ReturnType::Type(_, ty) => Some(&**ty),
            ReturnType::Default => None,
        };
        let parsed_return = match returned {
            None => Err(syn::Error::new(sig.paren_token.span.close(), RETURN_HELP)),
            Some(ty) => parse_return(ty),
        };
        let (response_stream, ok, err) = match parsed_return {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                // Placeholders; the errors are reported below.
                (false, Type::Verbatim(Default::default()), None)
            }
        };
        if let Some(e) = errors.into_iter().reduce(|mut a, b| {
            a.combine(b);
            a
        }) {
            return Err(e);
        }
        let (err, err_is_call_error) = err.expect("checked above");
        let mode = match (request_item.is_some(), response_stream) {
            (false, false) => Mode::Unary,
            (false, true) => Mode::ServerStreaming,
            (true, false) => Mode::ClientStreaming,
            (true, true) => Mode::Bidirectional,
        };
        let wire_name = name
            .map(|n| n.value())
            .unwrap_or_else(|| sig.ident.to_string());
        let docs = item
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect();
        let params: Vec<String> = match &request_item {
            Some((_, item)) => vec![format!("Streaming<{}>", type_text(item))],
            None => args.iter().map(|a| type_text(&a.ty)).collect(),
        };
        let signature = format!(
            "{}({}) -> {}",
            wire_name,
            params.join(", "),
            type_text(returned.expect("checked above"))
        );
        Ok(Method {
            ident: sig.ident.clone(),
            wire_name,
            mode,
            args,
            request_item,
            ok,
            err,
            err_is_call_error,
            idempotent,
            timeout_ms,
            docs,
            signature,
        })
    }
}

/// `Result<T, E>` or `Streaming<Result<T, E>>` → (response stream?, T, (E, declared as CallError<E>?)).
#[allow(clippy::type_complexity)]
fn parse_return(ty: &Type) -> syn::Result<(bool, Type, Option<(Type, bool)>)> {
    let (stream, result) = match streaming_item(ty) {
        Some(item) => (true, item),
        None => (false, ty),
    };
    let Some((ok, err)) = result_types(result) else {
        let message = if stream {
            "a response stream's items are results: write `Streaming<Result<T, E>>`".to_string()
        } else {
            RETURN_HELP.to_string()
        };
        return Err(syn::Error::new(result.span(), message));
    };
    if streaming_item(ok).is_some() {
        return Err(syn::Error::new(
            ok.span(),
            "a response stream is declared as `Streaming<Result<T, E>>`, \
             not inside a `Result`",
        ));
    }
    if let Type::Reference(r) = ok {
        return Err(syn::Error::new(
            r.span(),
            "responses are owned values (`T`, not `&T`)",
        ));
    }
    let err = match segment(err, "CallError").map(type_args) {
        Some(args) if args.len() == 1 => (args[0].clone(), true),
        _ => (err.clone(), false),
    };
    Ok((stream, ok.clone(), Some(err)))
}

/// Reads and removes `#[rpcnet(idempotent, timeout_ms = N, name = "...")]`.
fn method_options(attrs: &mut Vec<Attribute>) -> syn::Result<(bool, Option<u64>, Option<LitStr>)> {
    let mut idempotent = false;
    let mut timeout_ms = None;
    let mut name = None;
    let mut result = Ok(());
    attrs.retain(|attr| {
        if !attr.path().is_ident("rpcnet") {
            return true;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("idempotent") {
                idempotent = true;
            } else if meta.path.is_ident("timeout_ms") {
                let ms: u64 = meta.value()?.parse::<LitInt>()?.base10_parse()?;
                if ms == 0 {
                    return Err(meta.error("`timeout_ms` is at least 1"));
                }
                timeout_ms = Some(ms);
            } else if meta.path.is_ident("name") {
                let n: LitStr = meta.value()?.parse()?;
                check_name(&n, "method")?;
                name = Some(n);
            } else {
                return Err(meta.error(
                    "unknown method option: expected `idempotent`, `timeout_ms = N` \
                     or `name = \"...\"`",
                ));
            }
            Ok(())
        });
        if let Err(e) = parsed {
            match &mut result {
                Ok(()) => result = Err(e),
                Err(first) => first.combine(e),
            }
        }
        false
    });
    result.map(|()| (idempotent, timeout_ms, name))
}

/// Every method of the trait, or the combined errors. `#[rpcnet(..)]`
/// attributes are removed from the items either way.
pub fn methods(items: &mut [TraitItem]) -> syn::Result<Vec<Method>> {
    let mut methods = Vec::new();
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(first) => first.combine(e),
        None => errors = Some(e),
    };
    for item in items.iter_mut() {
        match item {
            TraitItem::Fn(f) => match Method::parse(f) {
                Ok(m) => methods.push(m),
                Err(e) => push(e),
            },
            other => push(syn::Error::new(
                other.span(),
                "a service trait holds only `async fn` methods",
            )),
        }
    }
    let mut seen = std::collections::HashMap::new();
    for m in &methods {
        if let Some(first) = seen.insert(m.wire_name.clone(), m.ident.clone()) {
            push(syn::Error::new(
                m.ident.span(),
                format!(
                    "`{}` has the same wire name as `{first}`: {:?} (set another with \
                     #[rpcnet(name = \"...\")])",
                    m.ident, m.wire_name
                ),
            ));
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(methods),
    }
}
