import NIOCore
import NIOHTTP1
import TrellisHTTP

/// The web UI's files, compiled into the binary (no files to install, nothing fetched from
/// elsewhere): one page, one stylesheet and one script, whose parts live beside this file.
enum UIAssets {
    struct Asset {
        let contentType: String
        let bytes: ByteBuffer
    }

    static let files: [String: Asset] = [
        "index.html": Asset(contentType: "text/html; charset=utf-8", bytes: ByteBuffer(string: UIPage.html)),
        "app.css": Asset(contentType: "text/css; charset=utf-8", bytes: ByteBuffer(string: UIStyle.css)),
        "app.js": Asset(contentType: "text/javascript; charset=utf-8",
                        bytes: ByteBuffer(string: [UIScript.core, UIScript.services, UIScript.trace, UIScript.kv, UIScript.access]
                            .joined(separator: "\n"))),
    ]

    /// Scripts, styles and requests from this origin only; no framing by other sites.
    static let contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        + "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    /// Consul's answer to a browser at the agent's root: a permanent redirect to the UI.
    static var redirectToUI: HTTPResponse {
        var response = HTTPResponse(status: .movedPermanently)
        response.headers.add(name: "Location", value: "/ui/")
        return response
    }

    /// The file at `name` under `/ui/`; every other name gets the page, whose script routes by the URL's fragment.
    static func response(for name: String) -> HTTPResponse {
        let asset = files[name] ?? files["index.html"]!
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: asset.contentType)
        headers.add(name: "Cache-Control", value: "no-cache")
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        headers.add(name: "Content-Security-Policy", value: contentSecurityPolicy)
        headers.add(name: "Referrer-Policy", value: "no-referrer")
        return HTTPResponse(status: .ok, headers: headers, body: asset.bytes)
    }
}

extension ConsulAPI {
    /// `GET /ui/*`, served without a token as Consul serves its UI; `/ui` is redirected to `/ui/`.
    func uiAsset(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        guard context.request.path != "/ui" else { return immediate(UIAssets.redirectToUI, context) }
        return immediate(UIAssets.response(for: context.rest), context)
    }
}
