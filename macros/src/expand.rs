//! The generated code: the trait with `Send` futures, `<Trait>Server`,
//! `<Trait>Client` and `<Trait>ClusterClient`. All the work is done by
//! `rpcnet::typed::__private`; this is glue that names the types.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemTrait, TraitItem, Type};

use crate::model::{self, Method, Mode, ServiceOptions};

pub fn expand(
    options: ServiceOptions,
    options_error: Option<syn::Error>,
    mut item: ItemTrait,
) -> TokenStream {
    let mut errors: Option<syn::Error> = options_error;
    let mut push = |e: syn::Error| match &mut errors {
        Some(first) => first.combine(e),
        None => errors = Some(e),
    };
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        push(syn::Error::new(
            item.generics.span(),
            "a service trait is not generic: every type must be known to encode it",
        ));
    }
    let methods = match model::methods(&mut item.items) {
        Ok(m) => m,
        Err(e) => {
            push(e);
            Vec::new()
        }
    };
    if let Some(errors) = errors {
        // The trait as written (without `#[rpcnet]` attributes), so that
        // the only errors are the ones above.
        let mut out = errors.to_compile_error();
        out.extend(quote!(#item));
        return out;
    }
    Generator::new(options, item, methods).generate()
}

struct Generator {
    item: ItemTrait,
    methods: Vec<Method>,
    krate: TokenStream,
    codec: TokenStream,
    service_name: String,
    version: Option<u64>,
}

impl Generator {
    fn new(options: ServiceOptions, item: ItemTrait, methods: Vec<Method>) -> Self {
        let krate = match &options.krate {
            Some(path) => quote!(#path),
            None => quote!(::rpcnet),
        };
        let codec = match &options.codec {
            Some(codec) => quote!(#codec),
            None => quote!(#krate::typed::Postcard),
        };
        let service_name = options
            .name
            .map(|n| n.value())
            .unwrap_or_else(|| item.ident.to_string());
        Self {
            item,
            methods,
            krate,
            codec,
            service_name,
            version: options.version,
        }
    }

    fn generate(&self) -> TokenStream {
        let trait_def = self.trait_def();
        let server = self.server();
        let client = self.client();
        let cluster = self.cluster_client();
        let checks = self.type_checks();
        // The checks first: a type without serde's traits is then
        // reported at the type before the uses that need it.
        quote! {
            #checks
            #trait_def
            #server
            #client
            #cluster
        }
    }

    /// The trait with each `async fn` as `fn -> impl Future + Send`, so a
    /// server can run its futures on any tokio worker.
    fn trait_def(&self) -> TokenStream {
        let mut item = self.item.clone();
        for it in &mut item.items {
            let TraitItem::Fn(f) = it else { continue };
            f.sig.asyncness = None;
            let output = match &f.sig.output {
                syn::ReturnType::Type(_, ty) => quote!(#ty),
                syn::ReturnType::Default => quote!(()),
            };
            f.sig.output = syn::parse_quote! {
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
            };
            if let Some(body) = &f.default {
                f.default = Some(syn::parse_quote!({ async move #body }));
            }
        }
        quote!(#item)
    }

    fn names(&self) -> (syn::Ident, syn::Ident, syn::Ident) {
        let ident = &self.item.ident;
        (
            format_ident!("{}Server", ident),
            format_ident!("{}Client", ident),
            format_ident!("{}ClusterClient", ident),
        )
    }

    /// The name of the hidden function giving the descriptor of method `i`.
    fn descriptor(i: usize) -> syn::Ident {
        format_ident!("__RPCNET_METHOD_{}", i)
    }

    fn encoding(&self, ty: &Type) -> TokenStream {
        let krate = &self.krate;
        let codec = &self.codec;
        if model::is_bytes(ty) {
            quote!(#krate::typed::__private::Raw)
        } else {
            quote!(#krate::typed::__private::Coded<#codec>)
        }
    }

    /// The request type of a unary or server-streaming method: `()`, the
    /// single argument's type, or a tuple of them.
    fn request_type(m: &Method) -> Type {
        match m.args.as_slice() {
            [] => syn::parse_quote!(()),
            [one] => one.ty.clone(),
            many => {
                let tys = many.iter().map(|a| &a.ty);
                syn::parse_quote!((#(#tys,)*))
            }
        }
    }

    /// The type that is encoded as a request (a stream's item for streams).
    fn request_value_type(m: &Method) -> Type {
        match &m.request_item {
            Some((_, item)) => item.clone(),
            None => Self::request_type(m),
        }
    }

    fn descriptors(&self) -> TokenStream {
        let krate = &self.krate;
        let codec = &self.codec;
        let version = match self.version {
            Some(v) => format!(" v{v}"),
            None => String::new(),
        };
        let consts = self.methods.iter().enumerate().map(|(i, m)| {
            let desc = Self::descriptor(i);
            let wire = format!("{}.{}", self.service_name, m.wire_name);
            let signature = format!("{}{}: {}", self.service_name, version, m.signature);
            let timeout = m.timeout_ms.unwrap_or(0);
            let idempotent = m.idempotent;
            quote! {
                #[doc(hidden)]
                pub fn #desc() -> &'static #krate::typed::__private::Method {
                    static METHOD: #krate::typed::__private::Method = #krate::typed::__private::Method::new(
                        #wire,
                        #signature,
                        <#codec as #krate::typed::Codec>::NAME,
                        #timeout,
                        #idempotent,
                    );
                    &METHOD
                }
            }
        });
        quote!(#(#consts)*)
    }

    fn server(&self) -> TokenStream {
        let krate = &self.krate;
        let codec = &self.codec;
        let vis = &self.item.vis;
        let trait_ident = &self.item.ident;
        let (server, client, _) = self.names();
        let service_name = &self.service_name;
        let doc = format!(
            "Serves a [`{trait_ident}`] implementation on an `RpcServer`: \
             [`register`](Self::register) adds a handler for each of its methods \
             under `{service_name}.<method>`."
        );
        let registrations = self.methods.iter().enumerate().map(|(i, m)| {
            let desc = Self::descriptor(i);
            let ident = &m.ident;
            let ok = &m.ok;
            let err = &m.err;
            let req_enc = self.encoding(&Self::request_value_type(m));
            let resp_enc = self.encoding(ok);
            let p = quote!(#krate::typed::__private);
            let names: Vec<syn::Ident> = (0..m.args.len())
                .map(|i| format_ident!("__rpcnet_arg{}", i))
                .collect();
            let pattern = match names.as_slice() {
                [] => quote!(()),
                [one] => quote!(#one),
                many => quote!((#(#many,)*)),
            };
            let req_ty = Self::request_value_type(m);
            let wrap_result = if m.err_is_call_error {
                quote!()
            } else {
                quote!(.map_err(#krate::typed::CallError::Service))
            };
            let wrap_stream = |call: TokenStream| {
                if m.err_is_call_error {
                    call
                } else {
                    quote!(#p::service_errors(#call))
                }
            };
            let (function, call) = match m.mode {
                Mode::Unary => (
                    quote!(serve_unary),
                    quote!(__rpcnet_service.#ident(#(#names),*).await #wrap_result),
                ),
                Mode::ServerStreaming => (
                    quote!(serve_server_streaming),
                    wrap_stream(quote!(__rpcnet_service.#ident(#(#names),*).await)),
                ),
                Mode::ClientStreaming => (
                    quote!(serve_client_streaming),
                    quote!(__rpcnet_service.#ident(__rpcnet_requests).await #wrap_result),
                ),
                Mode::Bidirectional => (
                    quote!(serve_bidirectional),
                    wrap_stream(quote!(__rpcnet_service.#ident(__rpcnet_requests).await)),
                ),
            };
            let input = match m.mode {
                Mode::Unary | Mode::ServerStreaming => quote!(#pattern: #req_ty),
                Mode::ClientStreaming | Mode::Bidirectional => {
                    quote!(__rpcnet_requests: #krate::typed::Streaming<#req_ty>)
                }
            };
            quote! {
                {
                    let __rpcnet_service = ::std::sync::Arc::clone(&self.service);
                    #p::#function::<__R, #codec, #req_enc, #resp_enc, #req_ty, #ok, #err, _, _>(
                        server,
                        #client::#desc(),
                        move |#input| {
                            let __rpcnet_service = ::std::sync::Arc::clone(&__rpcnet_service);
                            async move { #call }
                        },
                    )
                    .await;
                }
            }
        });
        quote! {
            #[doc = #doc]
            #[allow(dead_code)]
            #vis struct #server<S> {
                service: ::std::sync::Arc<S>,
            }

            impl<S> ::core::clone::Clone for #server<S> {
                fn clone(&self) -> Self {
                    Self { service: ::std::sync::Arc::clone(&self.service) }
                }
            }

            impl<S> ::core::fmt::Debug for #server<S> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.debug_struct(::core::stringify!(#server)).finish_non_exhaustive()
                }
            }

            #[allow(dead_code)]
            impl<S> #server<S> {
                /// The service's wire name: methods are `<NAME>.<method>`.
                pub const NAME: &'static str = #service_name;
            }

            #[allow(dead_code)]
            impl<S> #server<S>
            where
                S: #trait_ident + ::core::marker::Send + ::core::marker::Sync + 'static,
            {
                /// An adapter serving `service`.
                pub fn new(service: S) -> Self {
                    Self { service: ::std::sync::Arc::new(service) }
                }

                /// An adapter serving a shared `service`.
                pub fn from_arc(service: ::std::sync::Arc<S>) -> Self {
                    Self { service }
                }

                /// The service value.
                pub fn service(&self) -> &::std::sync::Arc<S> {
                    &self.service
                }

                /// Registers a handler for every method on `server` (an
                /// `RpcServer` or a `ServerHandle`); registering again
                /// replaces them.
                pub async fn register<__R: #krate::typed::Registrar>(&self, server: &__R) {
                    #(#registrations)*
                }
            }
        }
    }

    /// The client methods, for the plain (`cluster == false`) or the
    /// cluster client.
    fn client_methods(&self, cluster: bool) -> Vec<TokenStream> {
        let krate = &self.krate;
        let codec = &self.codec;
        let (_, client, _) = self.names();
        let p = quote!(#krate::typed::__private);
        self.methods
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let desc = Self::descriptor(i);
                let ident = &m.ident;
                let docs = &m.docs;
                let ok = &m.ok;
                let err = &m.err;
                let req_ty = Self::request_value_type(m);
                let req_enc = self.encoding(&req_ty);
                let resp_enc = self.encoding(ok);
                let call_error = quote!(#krate::typed::CallError<#err>);
                let response = match m.mode {
                    Mode::Unary | Mode::ClientStreaming => quote!(#ok),
                    Mode::ServerStreaming | Mode::Bidirectional => quote! {
                        #krate::typed::Streaming<::core::result::Result<#ok, #call_error>>
                    },
                };
                let (params, request) = match &m.request_item {
                    Some((name, item)) => (
                        quote!(#name: impl #p::Stream<Item = #item> + ::core::marker::Send + 'static),
                        quote!(#name),
                    ),
                    None => {
                        let names: Vec<_> = m.args.iter().map(|a| &a.ident).collect();
                        let tys = m.args.iter().map(|a| &a.ty);
                        let value = match names.as_slice() {
                            [] => quote!(()),
                            [one] => quote!(#one),
                            many => quote!((#(#many,)*)),
                        };
                        (quote!(#(#names: #tys),*), value)
                    }
                };
                let function = match (m.mode, cluster) {
                    (Mode::Unary, false) => quote!(unary),
                    (Mode::ServerStreaming, false) => quote!(server_streaming),
                    (Mode::ClientStreaming, false) => quote!(client_streaming),
                    (Mode::Bidirectional, false) => quote!(bidirectional),
                    (Mode::Unary, true) => quote!(cluster_unary),
                    (Mode::ServerStreaming, true) => quote!(cluster_server_streaming),
                    (Mode::ClientStreaming, true) => quote!(cluster_client_streaming),
                    (Mode::Bidirectional, true) => quote!(cluster_bidirectional),
                };
                let stream_param = match m.mode {
                    Mode::ClientStreaming | Mode::Bidirectional => quote!(, _),
                    _ => quote!(),
                };
                let target = if cluster {
                    quote!(&self.client, self.filter.as_deref())
                } else {
                    quote!(&self.client)
                };
                let wire = format!(" Calls `{}.{}`.", self.service_name, m.wire_name);
                let spacer = if docs.is_empty() { quote!() } else { quote!(#[doc = ""]) };
                let resumable = if cluster && m.mode == Mode::ServerStreaming {
                    let name = format_ident!("{}_resumable", ident);
                    let lead = if m.args.is_empty() {
                        quote!()
                    } else {
                        quote!(#params,)
                    };
                    let doc = format!(
                        " `{ident}` as a resumable stream (`{}.{}`): `resume(last)` makes \
                         the request that starts the stream right after `last`, the last \
                         value received (the arguments, as a tuple when there are \
                         several). When the stream's worker fails, the stream reopens \
                         itself on another worker matching the filter with that request, \
                         so every value arrives once and in order; see \
                         `ClusterClient::call_worker_resumable`.",
                        self.service_name, m.wire_name
                    );
                    quote! {
                        #[doc = #doc]
                        pub fn #name(
                            &self,
                            #lead
                            resume: impl FnMut(&#ok) -> #req_ty + ::core::marker::Send + 'static,
                        ) -> impl ::core::future::Future<
                            Output = ::core::result::Result<
                                #krate::typed::Resumable<#ok, #err>,
                                #call_error,
                            >,
                        > + ::core::marker::Send + 'static {
                            #p::cluster_resumable::<#codec, #req_enc, #resp_enc, #req_ty, #ok, #err, _>(
                                #target,
                                #client::#desc(),
                                &self.options,
                                #request,
                                resume,
                            )
                        }
                    }
                } else {
                    quote!()
                };
                quote! {
                    #resumable

                    #(#docs)*
                    #spacer
                    #[doc = #wire]
                    pub fn #ident(&self, #params) -> impl ::core::future::Future<
                        Output = ::core::result::Result<#response, #call_error>,
                    > + ::core::marker::Send + 'static {
                        #p::#function::<#codec, #req_enc, #resp_enc, #req_ty, #ok, #err #stream_param>(
                            #target,
                            #client::#desc(),
                            &self.options,
                            #request,
                        )
                    }
                }
            })
            .collect()
    }

    fn client(&self) -> TokenStream {
        let krate = &self.krate;
        let vis = &self.item.vis;
        let trait_ident = &self.item.ident;
        let (_, client, _) = self.names();
        let service_name = &self.service_name;
        let doc = format!(
            "A typed client of the [`{trait_ident}`] service (`{service_name}`) over one \
             `RpcClient`. Cheap to clone."
        );
        let descriptors = self.descriptors();
        let methods = self.client_methods(false);
        quote! {
            #[doc = #doc]
            #[derive(Clone, Debug)]
            #[allow(dead_code)]
            #vis struct #client {
                client: #krate::RpcClient,
                options: #krate::CallOptions,
            }

            #[allow(dead_code)]
            impl #client {
                /// The service's wire name: methods are `<NAME>.<method>`.
                pub const NAME: &'static str = #service_name;

                #descriptors

                /// A client making its calls on `client`.
                pub fn new(client: #krate::RpcClient) -> Self {
                    Self { client, options: #krate::CallOptions::new() }
                }

                /// This client with `options` as the base of every call:
                /// their metadata is sent with each call, and their timeout
                /// replaces the methods' own (`#[rpcnet(timeout_ms)]`) and
                /// the connection's default.
                pub fn with_options(mut self, options: #krate::CallOptions) -> Self {
                    self.options = options;
                    self
                }

                /// The underlying client.
                pub fn rpc_client(&self) -> &#krate::RpcClient {
                    &self.client
                }

                #(#methods)*
            }
        }
    }

    fn cluster_client(&self) -> TokenStream {
        let krate = &self.krate;
        let vis = &self.item.vis;
        let trait_ident = &self.item.ident;
        let (_, _, cluster) = self.names();
        let service_name = &self.service_name;
        let doc = format!(
            "A typed client of the [`{trait_ident}`] service (`{service_name}`) over a \
             `ClusterClient`: each call goes to a worker matching the filter, with the \
             `ClusterClient`'s failover (methods marked `#[rpcnet(idempotent)]` are \
             retried elsewhere after failures where they may have run). Cheap to clone."
        );
        let methods = self.client_methods(true);
        quote! {
            #[doc = #doc]
            #[derive(Clone, Debug)]
            #[allow(dead_code)]
            #vis struct #cluster {
                client: ::std::sync::Arc<#krate::cluster::ClusterClient>,
                filter: ::core::option::Option<::std::string::String>,
                options: #krate::CallOptions,
            }

            #[allow(dead_code)]
            impl #cluster {
                /// The service's wire name: methods are `<NAME>.<method>`.
                pub const NAME: &'static str = #service_name;

                /// A client calling workers matching `filter` (as
                /// `WorkerRegistry::select_worker` reads it; `None`: any worker).
                pub fn new(
                    client: ::std::sync::Arc<#krate::cluster::ClusterClient>,
                    filter: ::core::option::Option<::std::string::String>,
                ) -> Self {
                    Self { client, filter, options: #krate::CallOptions::new() }
                }

                /// This client with `options` as the base of every call
                /// (metadata, a timeout replacing the methods' own, and
                /// `idempotent(true)` for every method).
                pub fn with_options(mut self, options: #krate::CallOptions) -> Self {
                    self.options = options;
                    self
                }

                /// The underlying cluster client.
                pub fn cluster_client(&self) -> &::std::sync::Arc<#krate::cluster::ClusterClient> {
                    &self.client
                }

                #(#methods)*
            }
        }
    }

    /// A check per encoded type, spanned at the type as written, so that a
    /// type without serde's traits is reported there first.
    fn type_checks(&self) -> TokenStream {
        let krate = &self.krate;
        let mut checks = Vec::new();
        for m in &self.methods {
            let mut types: Vec<&Type> = Vec::new();
            match &m.request_item {
                Some((_, item)) => types.push(item),
                None => types.extend(m.args.iter().map(|a| &a.ty)),
            }
            types.push(&m.ok);
            types.push(&m.err);
            for (n, ty) in types.into_iter().enumerate() {
                let is_err = n + 1 == types_len(m);
                if model::is_bytes(ty) && !is_err {
                    continue;
                }
                checks.push(quote_spanned! {ty.span()=>
                    #krate::typed::__private::assert_wire::<#ty>();
                });
            }
        }
        quote! {
            const _: fn() = || {
                #(#checks)*
            };
        }
    }
}

/// How many types `type_checks` lists for `m` (the error type is last).
fn types_len(m: &Method) -> usize {
    match &m.request_item {
        Some(_) => 3,
        None => m.args.len() + 2,
    }
}
