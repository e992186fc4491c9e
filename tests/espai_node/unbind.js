// The seed documents /devices/unbind without a Node.js example; this one follows the seed's
// examples for the other endpoints, with the seed's parameter example as its data.
const axios = require('axios');
// 定义请求头部
const headers = {
'authorization': 'esp_ai平台的32位open_api_key',
'Content-Type': 'application/json'
};
// 定义要发送的数据
const data = {
"api_key": "xxx",
"device_id": "XX:XX:XX:XX:XX:XX"
};
// 发送POST请求
axios.post('https://api.espai.fun/devices/unbind', data, {headers})
.then(response => {
console.log(response.data);
})
.catch(error => {
console.error(error);
});
