import TrellisCore
import XCTest

final class HostPortTests: XCTestCase {
    func testHTTPAddressesWithOrWithoutSchemeAndSlash() {
        for text in ["127.0.0.1:8500", "http://127.0.0.1:8500", "http://127.0.0.1:8500/"] {
            let parsed = HostPort.parseHTTP(text)
            XCTAssertEqual(parsed?.0, "127.0.0.1", text)
            XCTAssertEqual(parsed?.1, 8500, text)
        }
        XCTAssertEqual(HostPort.parseHTTP("http://[::1]:2379")?.0, "::1")
        XCTAssertNil(HostPort.parseHTTP("https://127.0.0.1:8501"), "other schemes are refused")
        XCTAssertNil(HostPort.parseHTTP("http://127.0.0.1"), "a port is required")
    }
}
