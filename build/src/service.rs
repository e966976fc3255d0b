//! Writes the client struct, handler trait and registration function of each service.

use std::fmt::Write;

use prost_build::{Method, Service, ServiceGenerator};

#[derive(Debug)]
pub(crate) struct Generator {
    krate: String,
}

impl Generator {
    pub(crate) fn new(krate: &str) -> Generator {
        Generator { krate: krate.to_owned() }
    }
}

/// `GreeterService` -> `greeter_service`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn doc(comments: &prost_build::Comments, fallback: &str) -> String {
    let lines: Vec<&String> = comments.leading.iter().collect();
    if lines.is_empty() {
        return format!("    /// {fallback}\n");
    }
    lines.iter().flat_map(|c| c.lines()).map(|l| format!("    ///{l}\n")).collect()
}

impl ServiceGenerator for Generator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        let k = &self.krate;
        let name = &service.name;
        let full = if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        };
        let client = format!("{name}Client");
        let handler = format!("{name}Handler");
        let register = format!("register_{}_handler", snake(name));

        let mut client_methods = String::new();
        let mut trait_methods = String::new();
        let mut registrations = String::new();
        for m in &service.methods {
            write_client_method(k, &service.proto_name, m, &mut client_methods);
            write_trait_method(k, m, &mut trait_methods);
            write_registration(k, &service.proto_name, m, &mut registrations);
        }
        let _ = write!(
            buf,
            r#"
/// Typed client of the `{full}` service: one method per RPC, each calling the endpoint
/// `{proto}.<Method>` of the named service through an rmicro [`Client`]({k}::client::Client).
#[derive(Clone, Debug)]
pub struct {client} {{
    service: ::std::string::String,
    client: {k}::client::Client,
}}

// Every RPC has its methods here, whether or not the including crate calls them all.
#[allow(dead_code)]
impl {client} {{
    /// A client of the service registered as `service` (e.g. `"greeter"`).
    pub fn new(service: impl ::std::convert::Into<::std::string::String>, client: {k}::client::Client) -> Self {{
        Self {{ service: service.into(), client }}
    }}

    /// A call to `method` of this service, to set options on before passing it to a `*_with` method.
    pub fn endpoint(&self, method: &str) -> {k}::client::Call {{
        {k}::client::Call::new(self.service.clone(), ::std::format!("{proto}.{{method}}"))
    }}
{client_methods}}}

/// The server side of `{full}`: implement it and pass it to [`{register}`].
pub trait {handler}: ::std::marker::Send + ::std::marker::Sync + 'static {{
{trait_methods}}}

/// Serves every RPC of `{full}` on `server` with `handler`.
pub fn {register}<H: {handler}>(server: &{k}::server::Server, handler: H) {{
    let handler = ::std::sync::Arc::new(handler);
{registrations}}}
"#,
            proto = service.proto_name,
        );
    }
}

fn write_client_method(k: &str, proto: &str, m: &Method, out: &mut String) {
    let (name, input, output, method) = (&m.name, &m.input_type, &m.output_type, &m.proto_name);
    let docs = doc(&m.comments, &format!("Calls `{proto}.{method}`."));
    let code = match (m.client_streaming, m.server_streaming) {
        (false, false) => format!(
            r#"
{docs}    pub fn {name}(&self, request: &{input}) -> impl ::std::future::Future<Output = ::std::result::Result<{k}::client::Response<{output}>, {k}::Error>> + ::std::marker::Send + use<'_> {{
        self.{name}_with({k}::client::Call::new(self.service.clone(), "{proto}.{method}"), request)
    }}

    /// Calls `{proto}.{method}` with the options set on `call`.
    pub fn {name}_with(&self, call: {k}::client::Call, request: &{input}) -> impl ::std::future::Future<Output = ::std::result::Result<{k}::client::Response<{output}>, {k}::Error>> + ::std::marker::Send + use<'_> {{
        self.client.call(call, request)
    }}
"#
        ),
        (false, true) => format!(
            r#"
{docs}    /// Sends `request`; receive the replies from the returned stream.
    pub async fn {name}(&self, request: &{input}) -> ::std::result::Result<{k}::client::Streaming<{input}, {output}>, {k}::Error> {{
        self.{name}_with({k}::client::Call::new(self.service.clone(), "{proto}.{method}"), request).await
    }}

    /// Opens `{proto}.{method}` with the options set on `call` and sends `request`.
    pub async fn {name}_with(&self, call: {k}::client::Call, request: &{input}) -> ::std::result::Result<{k}::client::Streaming<{input}, {output}>, {k}::Error> {{
        let mut stream = self.client.stream::<{input}, {output}>(call).await?;
        stream.send(request).await?;
        stream.close_send().await?;
        ::std::result::Result::Ok(stream)
    }}
"#
        ),
        (true, _) => format!(
            r#"
{docs}    /// Send requests on the returned stream, then `close_send` and receive.
    pub async fn {name}(&self) -> ::std::result::Result<{k}::client::Streaming<{input}, {output}>, {k}::Error> {{
        self.{name}_with({k}::client::Call::new(self.service.clone(), "{proto}.{method}")).await
    }}

    /// Opens `{proto}.{method}` with the options set on `call`.
    pub async fn {name}_with(&self, call: {k}::client::Call) -> ::std::result::Result<{k}::client::Streaming<{input}, {output}>, {k}::Error> {{
        self.client.stream::<{input}, {output}>(call).await
    }}
"#
        ),
    };
    out.push_str(&code);
}

fn write_trait_method(k: &str, m: &Method, out: &mut String) {
    let (name, input, output) = (&m.name, &m.input_type, &m.output_type);
    let docs = doc(&m.comments, &format!("Handles `{}`.", m.proto_name));
    let result = |ok: &str| {
        format!("impl ::std::future::Future<Output = ::std::result::Result<{ok}, {k}::Error>> + ::std::marker::Send")
    };
    let signature = match (m.client_streaming, m.server_streaming) {
        (false, false) => {
            format!("fn {name}(&self, ctx: {k}::context::Context, request: {input}) -> {}", result(output))
        }
        (false, true) => format!(
            "fn {name}(&self, ctx: {k}::context::Context, request: {input}, replies: {k}::server::ServerStream<{input}, {output}>) -> {}",
            result("()")
        ),
        (true, false) => format!(
            "fn {name}(&self, ctx: {k}::context::Context, requests: &mut {k}::server::ServerStream<{input}, {output}>) -> {}",
            result(output)
        ),
        (true, true) => format!(
            "fn {name}(&self, ctx: {k}::context::Context, stream: {k}::server::ServerStream<{input}, {output}>) -> {}",
            result("()")
        ),
    };
    let _ = writeln!(out, "{docs}    {signature};");
}

fn write_registration(k: &str, proto: &str, m: &Method, out: &mut String) {
    let (name, input, output, method) = (&m.name, &m.input_type, &m.output_type, &m.proto_name);
    let endpoint = format!("{proto}.{method}");
    let code = match (m.client_streaming, m.server_streaming) {
        (false, false) => format!(
            r#"    let h = handler.clone();
    server.handle("{endpoint}", move |ctx: {k}::context::Context, request: {input}| {{
        let h = h.clone();
        async move {{ h.{name}(ctx, request).await }}
    }});
"#
        ),
        (false, true) => format!(
            r#"    let h = handler.clone();
    server.handle_stream("{endpoint}", move |ctx: {k}::context::Context, mut stream: {k}::server::ServerStream<{input}, {output}>| {{
        let h = h.clone();
        async move {{
            let request = stream.recv().await?.ok_or_else(|| {k}::Error::bad_request("{endpoint} needs a request message"))?;
            h.{name}(ctx, request, stream).await
        }}
    }});
"#
        ),
        (true, false) => format!(
            r#"    let h = handler.clone();
    server.handle_stream("{endpoint}", move |ctx: {k}::context::Context, mut stream: {k}::server::ServerStream<{input}, {output}>| {{
        let h = h.clone();
        async move {{
            let reply = h.{name}(ctx, &mut stream).await?;
            stream.send(&reply).await
        }}
    }});
"#
        ),
        (true, true) => format!(
            r#"    let h = handler.clone();
    server.handle_stream("{endpoint}", move |ctx: {k}::context::Context, stream: {k}::server::ServerStream<{input}, {output}>| {{
        let h = h.clone();
        async move {{ h.{name}(ctx, stream).await }}
    }});
"#
        ),
    };
    out.push_str(&code);
}
