//! The options inside `#[process_actor(...)]`: none, or `mailbox = queue | pipe`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Token};

/// The kind of mailbox the actor gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Mailbox {
    /// `send` only (the default).
    #[default]
    Queue,
    /// `call` waits for a reply.
    Pipe,
}

/// The parsed options.
#[derive(Debug, Default)]
pub(crate) struct Options {
    pub(crate) mailbox: Mailbox,
}

/// One `key` or `key = value`, as written (any key, so that an unknown one gets its own
/// error rather than a parse error).
struct RawOption {
    key: Ident,
    value: Option<(Token![=], Expr)>,
}

impl Parse for RawOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = input.call(Ident::parse_any)?;
        let value = if input.peek(Token![=]) {
            Some((input.parse()?, input.parse()?))
        } else {
            None
        };
        Ok(RawOption { key, value })
    }
}

impl ToTokens for RawOption {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.key.to_tokens(tokens);
        if let Some((eq, value)) = &self.value {
            eq.to_tokens(tokens);
            value.to_tokens(tokens);
        }
    }
}

impl Options {
    /// Parses the attribute's arguments; every mistake is reported (combined in one
    /// error), not only the first.
    pub(crate) fn parse(args: TokenStream) -> syn::Result<Options> {
        let raw = Punctuated::<RawOption, Token![,]>::parse_terminated.parse2(args)?;
        let mut options = Options::default();
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        let mut mailbox_seen = false;
        for opt in &raw {
            if opt.key != "mailbox" {
                push(syn::Error::new_spanned(
                    &opt.key,
                    format!("unknown option `{}`, expected `mailbox`", opt.key.unraw()),
                ));
                continue;
            }
            if std::mem::replace(&mut mailbox_seen, true) {
                push(syn::Error::new_spanned(opt, "option `mailbox` given twice"));
                continue;
            }
            match &opt.value {
                None => push(syn::Error::new_spanned(
                    &opt.key,
                    "option `mailbox` needs a value: `mailbox = queue` or `mailbox = pipe`",
                )),
                Some((_, value)) => match mailbox_kind(value) {
                    Some(kind) => options.mailbox = kind,
                    None => push(syn::Error::new_spanned(
                        value,
                        format!(
                            "unknown mailbox `{}`, expected `queue` or `pipe`",
                            value.to_token_stream()
                        ),
                    )),
                },
            }
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(options),
        }
    }
}

/// `queue` or `pipe`, written as a bare identifier.
fn mailbox_kind(value: &Expr) -> Option<Mailbox> {
    let Expr::Path(p) = value else { return None };
    if p.qself.is_some() || !p.attrs.is_empty() {
        return None;
    }
    let ident = p.path.get_ident()?;
    if ident == "queue" {
        Some(Mailbox::Queue)
    } else if ident == "pipe" {
        Some(Mailbox::Pipe)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(args: TokenStream) -> Vec<String> {
        match Options::parse(args) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn no_options_is_a_queue_mailbox() {
        assert_eq!(Options::parse(quote!()).unwrap().mailbox, Mailbox::Queue);
    }

    #[test]
    fn mailbox_queue_or_pipe() {
        let q = Options::parse(quote!(mailbox = queue)).unwrap();
        assert_eq!(q.mailbox, Mailbox::Queue);
        let p = Options::parse(quote!(mailbox = pipe,)).unwrap();
        assert_eq!(p.mailbox, Mailbox::Pipe);
    }

    #[test]
    fn every_mistake_is_reported() {
        assert_eq!(
            messages(quote!(x = 1, mailbox = pipe, mailbox = queue, type)),
            [
                "unknown option `x`, expected `mailbox`",
                "option `mailbox` given twice",
                "unknown option `type`, expected `mailbox`",
            ]
        );
        assert_eq!(
            messages(quote!(mailbox = ring)),
            ["unknown mailbox `ring`, expected `queue` or `pipe`"]
        );
        assert_eq!(
            messages(quote!(mailbox = "pipe")),
            ["unknown mailbox `\"pipe\"`, expected `queue` or `pipe`"]
        );
        assert_eq!(
            messages(quote!(mailbox)),
            ["option `mailbox` needs a value: `mailbox = queue` or `mailbox = pipe`"]
        );
    }

    #[test]
    fn syntax_errors_are_parse_errors() {
        assert_eq!(messages(quote!(mailbox pipe)).len(), 1);
    }
}
