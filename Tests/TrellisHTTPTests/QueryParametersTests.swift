import TrellisHTTP
import XCTest

final class QueryParametersTests: XCTestCase {
    func testParametersArePercentAndPlusDecodedInOrder() {
        let query = QueryParameters("filter=Service+%3D%3D+%22web%22&tag=a&tag=b&flag&empty=")
        XCTAssertEqual(query["filter"], #"Service == "web""#)
        XCTAssertEqual(query.all("tag"), ["a", "b"])
        XCTAssertTrue(query.has("flag"))
        XCTAssertEqual(query["empty"], "")
        XCTAssertNil(query["missing"])
    }

    func testFlagsAreSetByPresenceOrByAGoBoolean() {
        let query = QueryParameters("passing&stale=&recurse=true&cached=0&wrong=yes")
        XCTAssertEqual(query.flag("passing"), true)
        XCTAssertEqual(query.flag("stale"), true)
        XCTAssertEqual(query.flag("recurse"), true)
        XCTAssertEqual(query.flag("cached"), false)
        XCTAssertEqual(query.flag("absent"), false)
        XCTAssertNil(query.flag("wrong"), "a value that is no boolean is an error for the caller to report")
    }

    func testGoBoolTakesExactlyStrconvParseBoolsSpellings() {
        for text in ["1", "t", "T", "true", "TRUE", "True"] { XCTAssertEqual(GoBool.parse(text), true, text) }
        for text in ["0", "f", "F", "false", "FALSE", "False"] { XCTAssertEqual(GoBool.parse(text), false, text) }
        for text in ["", "yes", "tRUE", " true"] { XCTAssertNil(GoBool.parse(text), text) }
    }
}
