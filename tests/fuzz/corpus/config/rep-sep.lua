local s = ("ab"):rep(3, "")
return { device_id = s .. ("x"):rep(2, "-") .. (""):rep(1e18, "") }