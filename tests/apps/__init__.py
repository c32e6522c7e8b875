"""Small applications the deployment tests run under real servers."""
