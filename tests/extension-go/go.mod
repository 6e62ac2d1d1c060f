module extpack.test/extension

go 1.22
