//! `#[derive(Config)]`: a component's configuration written once, as a plain struct.
//!
//! ```ignore
//! #[derive(gymnos_plugin_sdk::Config)]
//! pub struct MlpConfig {
//!     /// Sizes of the hidden layers.
//!     #[config(default = [256, 128], min = 1, non_empty)]
//!     pub hidden: Vec<i64>,
//!     /// Dropout probability after each hidden layer.
//!     #[config(default = 0.1, range = 0.0..1.0)]
//!     pub dropout: f64,
//!     /// Folder holding the data (required: no default).
//!     #[config(exists = "dir")]
//!     pub path: std::path::PathBuf,
//! }
//! ```
//!
//! Each field is a key: its name (or `rename = "..."`), its type (from the Rust type, or
//! `ty = "json"` for any serde type), its default (JSON-like, as `serde_json::json!` reads it;
//! no default makes the key required, `Option<T>` defaults to `null`), its description (the doc
//! comment, required) and its rules: `range = a..b` / `a..=b` / `a..`, `min = x`, `max = x`,
//! `above = x`, `below = x` (bounds left out: `> x`, `< x`; derive 1.3),
//! `one_of = [..]`, `min_len = n`, `max_len = n`, `non_empty`, `exists = "file"|"dir"|"any"`,
//! `inside_run_folder`, and `schema = path::to::fn` (a JSON Schema for `json` keys). The derive
//! implements `gymnos_plugin_sdk::ConfigSchema`, from which the SDK produces both the declared
//! keys (today's metadata) and the typed value, so a key cannot be declared and read differently.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{quote, quote_spanned};
use syn::{
    parse_macro_input, spanned::Spanned, Data, DeriveInput, Expr, ExprRange, Fields, GenericArgument, LitInt, LitStr,
    PathArguments, RangeLimits, Type,
};

#[proc_macro_derive(Config, attributes(config))]
pub fn derive_config(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// What one field declares.
struct Key {
    ident: syn::Ident,
    name: String,
    ty: Tokens,
    default: Option<Tokens>,
    description: String,
    rules: Vec<Tokens>,
    schema: Option<syn::Path>,
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(input.span(), "#[derive(Config)] needs a struct with named fields"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(input.span(), "#[derive(Config)] needs a struct with named fields"));
    };
    let keys: Vec<Key> = fields.named.iter().map(parse_field).collect::<syn::Result<_>>()?;
    let sdk = quote!(::gymnos_plugin_sdk);
    let specs = keys.iter().map(|k| {
        let (name, ty, description) = (&k.name, &k.ty, &k.description);
        let default = match &k.default {
            Some(tokens) => quote!(::std::option::Option::Some(#sdk::serde_json::json!(#tokens))),
            None => quote!(::std::option::Option::None),
        };
        let rules = &k.rules;
        let schema = match &k.schema {
            Some(f) => quote!(::std::option::Option::Some(#f())),
            None => quote!(::std::option::Option::None),
        };
        quote! {
            #sdk::KeySpec {
                name: #name.to_string(),
                ty: #sdk::ConfigType::#ty,
                default: #default,
                description: #description.to_string(),
                rules: ::std::vec![#(#rules),*],
                schema: #schema,
            }
        }
    });
    let reads = keys.iter().map(|k| {
        let (ident, name) = (&k.ident, &k.name);
        quote_spanned!(ident.span()=> #ident: config.get(#name)?)
    });
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #sdk::ConfigSchema for #name #ty_generics #where_clause {
            fn keys() -> ::std::vec::Vec<#sdk::KeySpec> {
                ::std::vec![#(#specs),*]
            }
            fn from_config(config: &#sdk::Config) -> #sdk::Result<Self> {
                ::std::result::Result::Ok(Self { #(#reads),* })
            }
        }
    })
}

fn parse_field(field: &syn::Field) -> syn::Result<Key> {
    let ident = field.ident.clone().expect("named field");
    let mut key = Key {
        name: ident.to_string(),
        ident,
        ty: Tokens::new(),
        default: None,
        description: doc_comment(field),
        rules: Vec::new(),
        schema: None,
    };
    if key.description.is_empty() {
        return Err(syn::Error::new(
            field.span(),
            "document the key with a doc comment (`/// ...`): it is its description",
        ));
    }
    let sdk = quote!(::gymnos_plugin_sdk);
    let mut ty_override = None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("config")) {
        attr.parse_nested_meta(|meta| {
            let path = &meta.path;
            let number = |e: &Expr| quote!(::std::option::Option::Some((#e) as f64));
            if path.is_ident("default") {
                let value: Expr = meta.value()?.parse()?;
                key.default = Some(quote!(#value));
            } else if path.is_ident("rename") {
                key.name = meta.value()?.parse::<LitStr>()?.value();
            } else if path.is_ident("ty") {
                ty_override = Some(meta.value()?.parse::<LitStr>()?);
            } else if path.is_ident("range") {
                let range: ExprRange = meta.value()?.parse()?;
                let none = quote!(::std::option::Option::None);
                let min = range.start.as_deref().map_or(none.clone(), number);
                let max = range.end.as_deref().map_or(none, number);
                let exclusive_max = matches!(range.limits, RangeLimits::HalfOpen(_)) && range.end.is_some();
                key.rules.push(quote! {
                    #sdk::api::Constraint::Range { min: #min, max: #max, exclusive_min: false, exclusive_max: #exclusive_max }
                });
            } else if ["min", "max", "above", "below"].iter().any(|b| path.is_ident(b)) {
                // `min`/`max` include the bound; `above`/`below` (derive 1.3) exclude it.
                let bound = number(&meta.value()?.parse::<Expr>()?);
                let none = quote!(::std::option::Option::None);
                let lower = path.is_ident("min") || path.is_ident("above");
                let exclusive = path.is_ident("above") || path.is_ident("below");
                let (min, max) = if lower { (bound, none) } else { (none, bound) };
                let (exclusive_min, exclusive_max) = (lower && exclusive, !lower && exclusive);
                key.rules.push(quote! {
                    #sdk::api::Constraint::Range {
                        min: #min, max: #max, exclusive_min: #exclusive_min, exclusive_max: #exclusive_max
                    }
                });
            } else if path.is_ident("one_of") {
                let Expr::Array(values) = meta.value()?.parse::<Expr>()? else {
                    return Err(meta.error("one_of takes a list: one_of = [\"a\", \"b\"]"));
                };
                let values = values.elems.iter().map(|v| quote!(#sdk::serde_json::json!(#v)));
                key.rules.push(quote!(#sdk::api::Constraint::OneOf { values: ::std::vec![#(#values),*] }));
            } else if path.is_ident("min_len") || path.is_ident("max_len") {
                let n: LitInt = meta.value()?.parse()?;
                let bound = quote!(::std::option::Option::Some(#n));
                let none = quote!(::std::option::Option::None);
                let (min, max) = if path.is_ident("min_len") { (bound, none) } else { (none, bound) };
                key.rules.push(quote!(#sdk::api::Constraint::Length { min: #min, max: #max }));
            } else if path.is_ident("non_empty") {
                key.rules.push(quote! {
                    #sdk::api::Constraint::Length { min: ::std::option::Option::Some(1), max: ::std::option::Option::None }
                });
            } else if path.is_ident("exists") {
                let kind = meta.value()?.parse::<LitStr>()?;
                let variant = match kind.value().as_str() {
                    "file" => quote!(File),
                    "dir" => quote!(Dir),
                    "any" => quote!(Any),
                    _ => return Err(syn::Error::new(kind.span(), "exists = \"file\", \"dir\" or \"any\"")),
                };
                key.rules.push(quote!(#sdk::api::Constraint::Exists { kind: #sdk::api::PathKind::#variant }));
            } else if path.is_ident("inside_run_folder") {
                key.rules.push(quote!(#sdk::api::Constraint::InsideRunFolder));
            } else if path.is_ident("schema") {
                key.schema = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error(
                    "unknown #[config] item; expected default, rename, ty, range, min, max, above, below, one_of, min_len, max_len, \
                     non_empty, exists, inside_run_folder or schema",
                ));
            }
            Ok(())
        })?;
    }
    let (ty, optional) = match &ty_override {
        Some(lit) => (named_type(lit)?, false),
        None => config_type(&field.ty).ok_or_else(|| {
            syn::Error::new(
                field.ty.span(),
                "no configuration type for this Rust type; say which with #[config(ty = \"json\")] (or integer, \
                 number, string, path, bool, integer[], number[], string[])",
            )
        })?,
    };
    key.ty = ty;
    if optional && key.default.is_none() {
        key.default = Some(quote!(null));
    }
    Ok(key)
}

/// The field's doc comment, as one line.
fn doc_comment(field: &syn::Field) -> String {
    let mut lines = Vec::new();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("doc")) {
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if let Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value {
                lines.push(s.value().trim().to_string());
            }
        }
    }
    lines.join(" ").trim().to_string()
}

fn named_type(lit: &LitStr) -> syn::Result<Tokens> {
    Ok(match lit.value().as_str() {
        "bool" => quote!(Bool),
        "integer" => quote!(Integer),
        "number" => quote!(Number),
        "string" => quote!(String),
        "path" => quote!(Path),
        "integer[]" => quote!(IntegerList),
        "number[]" => quote!(NumberList),
        "string[]" => quote!(StringList),
        "json" => quote!(Json),
        _ => return Err(syn::Error::new(lit.span(), "unknown configuration type")),
    })
}

/// The last path segment's name and its single generic argument, if any.
fn segment(ty: &Type) -> Option<(String, Option<&Type>)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let arg = match &last.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    Some((last.ident.to_string(), arg))
}

fn scalar(name: &str) -> Option<Tokens> {
    Some(match name {
        "bool" => quote!(Bool),
        "i8" | "i16" | "i32" | "i64" | "isize" | "u8" | "u16" | "u32" | "u64" | "usize" => quote!(Integer),
        "f32" | "f64" => quote!(Number),
        "String" => quote!(String),
        "PathBuf" => quote!(Path),
        "Value" => quote!(Json),
        _ => return None,
    })
}

/// The configuration type of a Rust type, and whether it is optional (`Option<T>`).
fn config_type(ty: &Type) -> Option<(Tokens, bool)> {
    let (name, arg) = segment(ty)?;
    match (name.as_str(), arg) {
        ("Option", Some(inner)) => config_type(inner).map(|(t, _)| (t, true)),
        ("Vec", Some(inner)) => {
            let (item, _) = segment(inner)?;
            let list = match scalar(&item)?.to_string().as_str() {
                "Integer" => quote!(IntegerList),
                "Number" => quote!(NumberList),
                "String" => quote!(StringList),
                _ => return None,
            };
            Some((list, false))
        }
        (name, None) => scalar(name).map(|t| (t, false)),
        _ => None,
    }
}
